"""KeyRoom: the built-in environment, made so that the current observation does not tell the right action.

The agent crosses `num_rooms` rooms in a row. Each room holds two keys of two different colours and two
doors of the same two colours. The agent first takes one key (either works), then must open the door of
the key's colour; the right door leads to the next room (or out, after the last: reward `win_reward`),
the wrong door ends the episode with reward 0.

Context inconsistency, on purpose: once a key is taken, the room reads the same whichever key it was
("You hold a key. Before you are a blue door and a red door."). Two steps with the same observation text
(the same state key) therefore come with different histories, and the right action at that state depends
on something only the history shows: the colour of the key taken one step earlier. A baseline that groups
steps by the current state alone (GiGPO's anchor groups, HGPO's level 1) mixes "red key" and "blue key"
steps; HGPO's deeper levels (which also match the previous state, here the key room, and with
`history_key: state_action` the action taken in it) separate them. The state text never names the key,
so a policy that takes either key must read its memory window to open the right door, and rooms with the
same two colours recur within an episode, so states are revisited at different depths. With the default
two colours every room holds both, so a policy can also win without memory by always taking and opening
the same colour; the tiny model learns exactly that shortcut (docs/results.md, learning curves).
`keys_per_room=1` closes it: each room holds one key of a random colour of its two, so the key is forced
and only the memory window tells which door to open (a memoryless policy wins 1 / 2**num_rooms).

Anything that is not an admissible action leaves the state unchanged (the rollout counts it invalid).
`expert_action()` returns the solver's action, used by the warm start and by tests.
"""

from __future__ import annotations

import random
from typing import Any


class KeyRoomEnv:
    """Rooms of two keys and two doors; open the door of the key you took. See the module docstring."""

    task_description = (
        "Escape through a row of rooms: in each room take one key, then open the door of its colour. "
        "A wrong door ends the game."
    )

    def __init__(
        self,
        num_rooms: int = 3,
        colors: tuple[str, ...] | list[str] = ("red", "blue"),
        win_reward: float = 10.0,
        keys_per_room: int = 2,
    ):
        if num_rooms < 1:
            raise ValueError(f"num_rooms must be >= 1, got {num_rooms}")
        if keys_per_room not in (1, 2):
            raise ValueError(f"keys_per_room must be 1 or 2, got {keys_per_room}")
        if len(set(colors)) < 2:
            raise ValueError(f"colors needs at least two distinct colours, got {list(colors)}")
        self.num_rooms = num_rooms
        self.keys_per_room = keys_per_room
        self.colors = tuple(colors)
        self.win_reward = float(win_reward)
        self._rooms: list[tuple[list[str], list[str]]] = []
        self._room = 0
        self._held: str | None = None
        self._done = True

    # -- protocol ---------------------------------------------------------------------------------
    def reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        rng = random.Random(seed)
        self._rooms = []
        for _ in range(self.num_rooms):
            pair = rng.sample(self.colors, 2)
            keys, doors = pair[:], pair[:]
            rng.shuffle(keys)
            rng.shuffle(doors)
            self._rooms.append((keys[: self.keys_per_room], doors))
        self._room, self._held, self._done = 0, None, False
        obs = self._observation()
        return obs, self._info(obs, won=False)

    def step(self, action_text: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("step() after the episode ended; call reset(seed) first")
        action = " ".join(action_text.lower().split())
        if action not in self.admissible_actions():
            obs = self._observation()
            return obs, 0.0, False, self._info(obs, won=False)
        color = action.split()[1]
        if self._held is None:
            self._held = color
            obs = self._observation()
            return obs, 0.0, False, self._info(obs, won=False)
        if color != self._held:
            self._done = True
            obs = "The key does not fit. An alarm sounds and the game is over."
            return obs, 0.0, True, self._info(obs, won=False)
        self._room, self._held = self._room + 1, None
        if self._room == self.num_rooms:
            self._done = True
            obs = "The last door opens onto daylight. You escaped."
            return obs, self.win_reward, True, self._info(obs, won=True)
        obs = self._observation()
        return obs, 0.0, False, self._info(obs, won=False)

    def close(self) -> None:
        self._done = True

    # -- helpers ----------------------------------------------------------------------------------
    def admissible_actions(self) -> list[str]:
        keys, doors = self._rooms[self._room]
        if self._held is None:
            return [f"take {c} key" for c in keys]
        return [f"open {c} door" for c in doors]

    def expert_action(self) -> str:
        """The solver: take the first key listed, then open the door of its colour."""
        keys, _ = self._rooms[self._room]
        return f"take {keys[0]} key" if self._held is None else f"open {self._held} door"

    def _observation(self) -> str:
        keys, doors = self._rooms[self._room]
        if self._held is None and len(keys) == 1:
            return f"You are in a room. On the floor lies a {keys[0]} key."
        if self._held is None:
            return f"You are in a room. On the floor lie a {keys[0]} key and a {keys[1]} key."
        return f"You hold a key. Before you are a {doors[0]} door and a {doors[1]} door."

    def _info(self, obs: str, won: bool) -> dict[str, Any]:
        admissible = [] if self._done else self.admissible_actions()
        return {"anchor": obs, "won": won, "admissible_actions": admissible}
