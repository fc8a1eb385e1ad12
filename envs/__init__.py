"""Text environments for hgpo, importable on their own: no models, no Ray.

A TextEnv is `reset(seed) -> (observation, info)`, `step(action_text) -> (observation, reward, done, info)`
and `close()`. `info` carries `anchor` (the raw observation used for grouping), `won`, and
`admissible_actions` where the environment has them.
"""

from envs.base import TextEnv
from envs.registry import ENVIRONMENTS, make_env

__all__ = ["ENVIRONMENTS", "TextEnv", "make_env"]
