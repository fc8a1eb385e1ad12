"""GoldPath: follow an environment's gold action sequence while an episode stays on it (the expert action)."""

from __future__ import annotations


class GoldPath:
    def __init__(self, actions: list[str] | None = None):
        self.actions = list(actions or [])
        self.index: int | None = 0  # of the next gold action; None once the episode left the path

    def record(self, action: str, changed_state: bool) -> None:
        """Advance on the next gold action; leave the path on any other action that changed the state."""
        if self.index is not None and self.index < len(self.actions) and action == self.actions[self.index]:
            self.index += 1
        elif changed_state:
            self.index = None

    def next_action(self, done: bool) -> str:
        """The next gold action; RuntimeError once the episode is over or has left the path."""
        if done or self.index is None or self.index >= len(self.actions):
            raise RuntimeError("no gold action: the episode is over or has left the gold action sequence")
        return self.actions[self.index]
