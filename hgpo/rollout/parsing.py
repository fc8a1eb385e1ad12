"""Model text -> action, or invalid."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RESPONSE = re.compile(r"^\s*<think>(.*?)</think>\s*<action>(.*?)</action>\s*$", re.DOTALL)


@dataclass(frozen=True)
class ParsedAction:
    action: str
    """The text inside <action>...</action>, whitespace collapsed; the raw text when invalid."""
    valid: bool
    """False when the response is not exactly `<think>...</think><action>...</action>` with a non-empty
    action, or the action is not one of the admissible actions (when the environment lists them)."""


def parse_action(text: str, admissible_actions: list[str] | None = None) -> ParsedAction:
    """Parse one response. Surrounding whitespace is ignored; one think block then one action block."""
    match = _RESPONSE.match(text)
    if match is None or "<action>" in match.group(2) or "<think>" in match.group(1):
        return ParsedAction(action=" ".join(text.split())[:200], valid=False)
    action = " ".join(match.group(2).split())
    if not action:
        return ParsedAction(action="", valid=False)
    if admissible_actions:
        normalized = {" ".join(a.lower().split()): a for a in admissible_actions}
        if action.lower() not in normalized:
            return ParsedAction(action=action, valid=False)
        action = normalized[action.lower()]
    return ParsedAction(action=action, valid=True)
