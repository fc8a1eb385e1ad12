"""Import of the optional packages that some environments need, naming the pip extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise ImportError that names hgpo's pip extra providing it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f'the {module!r} package is not installed; install hgpo\'s {extra!r} extra: pip install -e ".[{extra}]"'
        ) from err
