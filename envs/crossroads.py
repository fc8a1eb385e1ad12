"""Crossroads: the same observation reached through histories with different expected returns.

Every episode has three parts: a crossroads, a trail of `trail_length` bridges and a hall. At the
crossroads the agent takes one of two paths; the seed decides which path walks the trail first
(crossroads -> trail -> hall -> road) and which reaches the hall first (crossroads -> hall -> trail ->
road). Both routes have the same length and the same decisions, so the choice itself is neutral.
- On the trail, each bridge reads "A sign points to the red bridge. Before you are a blue bridge and a
  red bridge.": cross the bridge the sign points to (no memory needed); the other one ends the game.
- The hall reads the same on both routes ("You are in a hall. Before you are an oak door and an iron
  door."), but the right door depends on the history: the iron door leads to the trail (right if the
  trail is still ahead), the oak door to the road (right once the trail is behind). The previous
  observation tells which (a bridge, or the crossroads). The wrong door ends the game.
- Reaching the road pays `win_reward`; everything else pays 0.

Why it is hard for the step baselines: a trail bridge and the hall are met in two contexts whose
values differ by a whole factor of the remaining work. On the trail-first route the hall is still
ahead when a bridge is crossed, so every bridge there is worth less than the same-looking bridge on
the hall-first route; at the hall, the trail-first agent is one decision from the road and the
hall-first agent has the whole trail left. Pooling the two (GiGPO's anchor-state groups, HGPO's level
1) puts a baseline between them, so within one bucket a row's sign follows its route rather than its
action. The route shows in the history at a depth that grows along the trail: the hall and bridge 1
are told apart by the previous state (HGPO level 2, K >= 1), bridge 2 two states back (level 3,
K >= 2), bridge i by the state i steps back. GRPO has one baseline per task and is not fooled by
contexts but cannot tell steps apart. With two colours, bridges of the same text recur at
different positions, which mixes values further. docs/environments.md has the numbers.

`signs=False` takes the signs away: the bridge of the first colour always holds ("Before you are a blue
bridge and a red bridge.", red holds). Every bridge then reads alike whatever its route or position, so
the trail pools even more contexts, and the bridge rule is a fixed word a small model learns without
reading a colour out of the observation (the 2-layer tiny model cannot; docs/results.md). The hall still
needs the previous observation.

Anything that is not an admissible action leaves the state unchanged (the rollout counts it invalid).
`expert_action()` returns the solver's action, used by the warm start and by tests.
"""

from __future__ import annotations

import random
from typing import Any

PATHS = ("river", "forest")
TRAIL_DOOR, ROAD_DOOR = "iron", "oak"


class CrossroadsEnv:
    """A crossroads, a trail of bridges and a hall, in a route-dependent order. See the module docstring."""

    task_description = (
        "Reach the road: walk the trail of bridges and pass the hall, in either order. On the trail cross the "
        "bridge the sign points to. In the hall the iron door leads to the trail and the oak door to the road. "
        "A wrong choice ends the game."
    )

    def __init__(
        self,
        trail_length: int = 2,
        colors: tuple[str, ...] | list[str] = ("red", "blue"),
        win_reward: float = 10.0,
        signs: bool = True,
    ):
        if trail_length < 1:
            raise ValueError(f"trail_length must be >= 1, got {trail_length}")
        if len(set(colors)) < 2:
            raise ValueError(f"colors needs at least two distinct colours, got {list(colors)}")
        self.trail_length = trail_length
        self.colors = tuple(colors)
        self.win_reward = float(win_reward)
        self.signs = bool(signs)
        if not self.signs:
            self.task_description = self.task_description.replace(
                "cross the bridge the sign points to", f"the {self.colors[0]} bridge holds"
            )
        self._paths: list[str] = []
        self._trail_first = ""
        self._bridges: list[tuple[str, list[str]]] = []
        self._doors: list[str] = []
        self._place = "done"  # crossroads | trail | hall | done
        self._bridge = 0
        self._trail_walked = False
        self._hall_passed = False

    # -- protocol ---------------------------------------------------------------------------------
    def reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        rng = random.Random(seed)
        self._paths = rng.sample(PATHS, 2)
        self._trail_first = rng.choice(PATHS)
        if self.signs:
            self._bridges = [(rng.choice(self.colors), rng.sample(self.colors, 2)) for _ in range(self.trail_length)]
        else:  # the first colour holds, offered beside another in a random order
            sound, others = self.colors[0], self.colors[1:]
            self._bridges = [(sound, rng.sample([sound, rng.choice(others)], 2)) for _ in range(self.trail_length)]
        self._doors = rng.sample([ROAD_DOOR, TRAIL_DOOR], 2)
        self._place, self._bridge, self._trail_walked, self._hall_passed = "crossroads", 0, False, False
        obs = self._observation()
        return obs, self._info(obs, won=False)

    def step(self, action_text: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._place == "done":
            raise RuntimeError("step() after the episode ended; call reset(seed) first")
        action = " ".join(action_text.lower().split())
        if action not in self.admissible_actions():
            obs = self._observation()
            return obs, 0.0, False, self._info(obs, won=False)
        if action != self.expert_action() and self._place != "crossroads":
            self._place = "done"
            obs = (
                "The bridge breaks under you. The game is over."
                if action.startswith("cross")
                else "The door locks behind you in the dark. The game is over."
            )
            return obs, 0.0, True, self._info(obs, won=False)
        return self._advance(action)

    def close(self) -> None:
        self._place = "done"

    # -- helpers ----------------------------------------------------------------------------------
    def _advance(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        """Apply a right (or, at the crossroads, either) action."""
        if self._place == "crossroads":
            self._place = "trail" if action.split()[1] == self._trail_first else "hall"
        elif self._place == "hall":
            self._hall_passed = True
            self._place = "done" if self._trail_walked else "trail"
        else:
            self._bridge += 1
            if self._bridge == self.trail_length:
                self._trail_walked = True
                self._place = "done" if self._hall_passed else "hall"
        if self._place == "done":
            obs = "You reach the road home. You made it."
            return obs, self.win_reward, True, self._info(obs, won=True)
        obs = self._observation()
        return obs, 0.0, False, self._info(obs, won=False)

    def admissible_actions(self) -> list[str]:
        if self._place == "crossroads":
            return [f"take {p} path" for p in self._paths]
        if self._place == "trail":
            return [f"cross {c} bridge" for c in self._bridges[self._bridge][1]]
        return [f"open {d} door" for d in self._doors]

    def expert_action(self) -> str:
        """The solver: the first path listed, the bridge the sign points to, the door the history calls for."""
        if self._place == "crossroads":
            return f"take {self._paths[0]} path"
        if self._place == "trail":
            return f"cross {self._bridges[self._bridge][0]} bridge"
        return f"open {ROAD_DOOR if self._trail_walked else TRAIL_DOOR} door"

    def _observation(self) -> str:
        if self._place == "crossroads":
            return f"You stand at a crossroads. A {self._paths[0]} path and a {self._paths[1]} path lead away."
        if self._place == "trail":
            sign, (left, right) = self._bridges[self._bridge]
            bridges = f"Before you are a {left} bridge and a {right} bridge."
            return f"A sign points to the {sign} bridge. {bridges}" if self.signs else bridges
        return f"You are in a hall. Before you are an {self._doors[0]} door and an {self._doors[1]} door."

    def _info(self, obs: str, won: bool) -> dict[str, Any]:
        admissible = [] if self._place == "done" else self.admissible_actions()
        return {"anchor": obs, "won": won, "admissible_actions": admissible}
