"""The memory window: the last H (observation, action) pairs of one episode."""

from __future__ import annotations

from collections import deque


class Memory:
    """Keeps the most recent `history_length` (observation, action) pairs and the count of steps taken."""

    def __init__(self, history_length: int):
        self.history_length = history_length
        self._pairs: deque[tuple[str, str]] = deque(maxlen=history_length)
        self.steps_taken = 0

    def add(self, observation: str, action: str) -> None:
        self.steps_taken += 1
        self._pairs.append((observation, action))

    def recent(self) -> list[tuple[str, str]]:
        """Oldest first; at most history_length pairs."""
        return list(self._pairs)
