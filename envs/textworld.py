"""TextWorld: generated text adventures (Microsoft's `textworld` package, offline), one game per seed.

`reset(seed)` plays the game that `textworld.generator.make_game` builds from the seed and the difficulty
(`num_rooms`, `num_objects`, `quest_length`: the number of actions in the winning quest). Games are
compiled to Z-machine files (.z8, Inform 7 ships inside the wheel) once and cached under `cache_dir`,
named by TextWorld version, difficulty and seed; a new seed costs about 2 s, a cached one about 10 ms.
Writes are atomic, so workers sharing a cache directory never read a half-written game.

The observation is TextWorld's feedback, cleaned: no ASCII-art banner, no `>` prompt and status line,
no "RESTART, RESTORE or QUIT" question. The quest text (TextWorld's `objective`) moves from the first
observation into `task_description`, which `reset` sets per episode, so the prompt keeps it in view.
`anchor` is the cleaned observation. Reward: `win_reward` on the step that wins the quest, 0 otherwise
(TextWorld's intermediate score is not used); a lost game ends the episode with 0. Only TextWorld's
admissible commands reach the game: anything else leaves the state and the observation unchanged, which
also keeps Z-machine meta-commands (quit, restart, save, undo) out. `expert_action()` follows
TextWorld's `policy_commands`, a shortest winning plan from the current state.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from envs.optional import import_optional

_PROMPT = re.compile(r"\n>[^\n]*\Z")  # trailing "\n>   -= Room =-0/3" prompt and status line
_BANNER_LINE = re.compile(r"[\s_|\\/$<>.]*")  # lines of the TEXTWORLD ASCII-art banner (and blank lines)
_END_QUESTION = "Would you like to RESTART, RESTORE a saved game, QUIT or UNDO the last command?"


def clean_feedback(feedback: str) -> str:
    """TextWorld feedback without the banner, the prompt/status line and the end-of-game question."""
    text = _PROMPT.sub("", feedback).replace(_END_QUESTION, "")
    lines = text.splitlines()
    while lines and _BANNER_LINE.fullmatch(lines[0]):  # the banner only ever opens the first observation
        lines.pop(0)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in lines)).strip()


class TextWorldEnv:
    """Seeded TextWorld quests. See the module docstring."""

    task_description = "Play a text adventure: explore the rooms and use the objects to complete the quest."

    def __init__(
        self,
        num_rooms: int = 4,
        num_objects: int = 8,
        quest_length: int = 5,
        cache_dir: str = "~/.cache/hgpo/textworld",
        win_reward: float = 10.0,
    ):
        if num_rooms < 1 or quest_length < 1:
            raise ValueError(f"num_rooms and quest_length must be >= 1, got {num_rooms} and {quest_length}")
        if num_objects < 0:
            raise ValueError(f"num_objects must be >= 0, got {num_objects}")
        import_optional("textworld", "textworld")
        self.num_rooms, self.num_objects, self.quest_length = num_rooms, num_objects, quest_length
        self.cache_dir = Path(cache_dir).expanduser()
        self.win_reward = float(win_reward)
        self._env: Any = None
        self._state: Any = None
        self._obs = ""
        self._done = True

    def game_file(self, seed: int) -> Path:
        """The compiled game for `seed`, generated and cached on first use."""
        import textworld
        import textworld.generator

        name = f"tw{textworld.__version__}-r{self.num_rooms}-o{self.num_objects}-q{self.quest_length}-s{seed}"
        path = self.cache_dir / f"{name}.z8"
        if path.is_file():
            return path
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=self.cache_dir))
        try:
            options = textworld.GameOptions()
            options.seeds = seed % 2**32  # TextWorld seeds a numpy RandomState
            options.nb_rooms, options.nb_objects = self.num_rooms, self.num_objects
            options.quest_length = self.quest_length
            options.path = str(tmp / f"{name}.z8")
            game = textworld.generator.make_game(options)
            textworld.generator.compile_game(game, options)
            os.replace(tmp / f"{name}.json", self.cache_dir / f"{name}.json")
            os.replace(tmp / f"{name}.z8", path)  # last: its presence marks a complete game
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    def reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        import textworld

        path = str(self.game_file(seed))
        with warnings.catch_warnings():
            # Jericho warns that it cannot track score in TextWorld's games; TextWorld tracks it itself.
            warnings.filterwarnings("ignore", message=r"Game .* is not fully supported")
            if self._env is None:
                infos = textworld.EnvInfos(
                    admissible_commands=True, policy_commands=True, objective=True, won=True, lost=True
                )
                self._env = textworld.start(path, request_infos=infos)
            else:
                self._env.load(path)
        self._state = self._env.reset()
        objective = self._state.objective.strip()
        self.task_description = f"{TextWorldEnv.task_description} Your quest: {objective}"
        self._obs = clean_feedback(self._state.feedback.replace(objective, ""))
        self._done = False
        return self._obs, self._info(won=False)

    def step(self, action_text: str) -> tuple[str, float, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("step() after the episode ended; call reset(seed) first")
        commands = {" ".join(c.lower().split()): c for c in self._state.admissible_commands}
        command = commands.get(" ".join(action_text.lower().split()))
        if command is None:
            return self._obs, 0.0, False, self._info(won=False)
        self._state, _, done = self._env.step(command)
        won = bool(self._state.won)
        self._done = bool(done or won or self._state.lost)
        self._obs = clean_feedback(self._state.feedback)
        return self._obs, self.win_reward if won else 0.0, self._done, self._info(won=won)

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
        self._done = True

    def expert_action(self) -> str:
        """The next command of TextWorld's shortest winning plan from the current state."""
        if self._done or not self._state.policy_commands:
            raise RuntimeError("no winning plan from here: the episode is over or the game can no longer be won")
        return self._state.policy_commands[0]

    def _info(self, won: bool) -> dict[str, Any]:
        admissible = [] if self._done else list(self._state.admissible_commands)
        return {"anchor": self._obs, "won": won, "admissible_actions": admissible}
