"""Environment names -> constructors."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from envs.alfworld import AlfWorldEnv
from envs.base import TextEnv
from envs.keyroom import KeyRoomEnv
from envs.scienceworld import ScienceWorldEnv
from envs.sokoban import SokobanEnv
from envs.textworld import TextWorldEnv
from envs.textworld_express import TextWorldExpressEnv
from envs.webshop import WebShopEnv

# Modules here import only the standard library; optional packages load inside the constructors.
ENVIRONMENTS: dict[str, Callable[..., TextEnv]] = {
    "keyroom": KeyRoomEnv,
    "sokoban": SokobanEnv,
    "textworld": TextWorldEnv,
    "textworld_express": TextWorldExpressEnv,
    "scienceworld": ScienceWorldEnv,
    "alfworld": AlfWorldEnv,
    "webshop": WebShopEnv,
}


def check_env_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError if `name` is unknown or `kwargs` holds a parameter its constructor does not take."""
    if name not in ENVIRONMENTS:
        raise ValueError(f"env.name: unknown environment {name!r}; choices: {sorted(ENVIRONMENTS)}")
    params = inspect.signature(ENVIRONMENTS[name]).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"env.kwargs: {name} takes no parameter {unknown}; valid: {sorted(params)}")


def make_env(name: str, **kwargs: Any) -> TextEnv:
    """Build the environment registered as `name` with its keyword arguments."""
    check_env_kwargs(name, kwargs)
    return ENVIRONMENTS[name](**kwargs)
