"""The learning alarms: one warning, and a metric, when iterations in a row carry no or too little signal.

No learning: a run whose answers are almost all invalid, or whose advantages are all 0 (every group had
identical returns) while episodes still fail, trains nothing: the policy loss is exactly 0 and the run still
ends with exit status 0. After PATIENCE such iterations in a row this logs one warning that says what is
happening and what to try, and from then on `alarm/no_learning` is 1 for each iteration in that streak.

Stalled: a policy that has turned (nearly) deterministic on many tasks before solving them gets groups of
identical episodes, whose advantages are all 0, so it stops moving while success is still low. When at
least STALL_ZERO_SHARE of the advantages were 0 in each of the last STALL_WINDOW iterations and success over
them averaged below STALL_SUCCESS, this logs one warning and sets `alarm/stalled` to 1 for each such
iteration. The thresholds were chosen on the learning-curve runs of docs/results.md: over its 76 runs they
fire on the two Crossroads runs whose groups collapsed (HGPO seed 1 at iteration 49) and on 14 of the 15
Sokoban runs (none learned), and on none of the runs that learned. A plateau whose groups still differ is
not a stall here (9 Crossroads runs ended below 70% success without it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

PATIENCE = 3
"""Iterations in a row without learning signal before the no-learning alarm goes off."""
MAX_INVALID_RATE = 0.95
"""Above this share of invalid answers an iteration counts as without learning signal."""
STALL_WINDOW = 10
"""Iterations in a row with little signal before the stall alarm goes off."""
STALL_ZERO_SHARE = 0.3
"""An iteration has little signal when at least this share of its advantages is 0."""
STALL_SUCCESS = 0.9
"""A stall is a window whose mean success is below this; a policy that wins nearly always has converged."""


class NoLearningAlarm:
    """Watches each iteration's metrics (rollout/invalid_rate, adv/zero_share, rollout/success_rate) for a
    streak without signal (`alarm/no_learning`) or with too little of it (`alarm/stalled`)."""

    def __init__(self, run_dir: Path, patience: int = PATIENCE, stall_window: int = STALL_WINDOW):
        self.run_dir, self.patience = run_dir, patience
        self.streak = 0
        self.window: deque[tuple[float, float, float | None]] = deque(maxlen=stall_window)
        self.stalled = False

    def check(self, iteration: int, metrics: Mapping[str, float]) -> dict[str, float]:
        """Update the streaks with one iteration's metrics; return both alarms' flags (0.0 or 1.0)."""
        reasons = self._reasons(metrics)
        self.streak = self.streak + 1 if reasons else 0
        if self.streak == self.patience:
            log.warning(self._message(iteration, reasons, metrics))
        no_learning = self.streak >= self.patience
        stalled = self._stall(iteration, metrics, quiet=no_learning)
        return {"alarm/no_learning": float(no_learning), "alarm/stalled": float(stalled)}

    @staticmethod
    def _reasons(metrics: Mapping[str, float]) -> list[str]:
        reasons = []
        if metrics.get("rollout/invalid_rate", 0.0) > MAX_INVALID_RATE:
            reasons.append(f"over {MAX_INVALID_RATE:.0%} of the answers are invalid")
        # No adv/ metrics: every trajectory failed, so every advantage is 0 as well. All-zero advantages with
        # every episode won is a solved task, not a stuck run.
        if metrics.get("adv/zero_share", 1.0) >= 1.0 and metrics.get("rollout/success_rate", 0.0) < 1.0:
            reasons.append("every advantage is 0")
        return reasons

    def _stall(self, iteration: int, metrics: Mapping[str, float], quiet: bool) -> bool:
        """Whether the last STALL_WINDOW iterations each had many zero advantages and success stayed low; warns
        once when such a streak starts. `quiet`: the no-learning alarm holds, which says more (no stall then)."""
        entropy = metrics.get("loss/entropy")
        self.window.append((metrics.get("adv/zero_share", 1.0), metrics.get("rollout/success_rate", 0.0), entropy))
        zero, success, _ = zip(*self.window)
        stalled = (
            len(self.window) == self.window.maxlen
            and min(zero) >= STALL_ZERO_SHARE
            and sum(success) / len(success) < STALL_SUCCESS
            and not quiet
        )
        if stalled and not self.stalled:
            log.warning(self._stall_message(iteration))
        self.stalled = stalled
        return stalled

    def _stall_message(self, iteration: int) -> str:
        zero, success, entropy = zip(*self.window)
        n = len(self.window)
        known = [e for e in entropy if e is not None]
        policy = f", policy entropy {sum(known) / len(known):.2f}" if known else ""
        return (
            f"learning stalled for {n} iterations (up to iteration {iteration}): {min(zero):.0%}-{max(zero):.0%} "
            f"of the advantages were 0 in each (groups whose episodes all ended alike) while success averaged "
            f"{sum(success) / n:.0%}{policy}. The policy repeats itself on many tasks before solving them, or "
            "cannot solve them at all, and those groups teach it nothing. Try: a higher rollout.temperature, a "
            "larger learner.entropy_coef or rollout.group_size, a lower learner.lr, or resuming from an earlier "
            "checkpoint; and read what the model does in "
            f"{self.run_dir / 'trajectories.jsonl'}. This is counted in alarm/stalled."
        )

    def _message(self, iteration: int, reasons: list[str], metrics: Mapping[str, float]) -> str:
        rates = ", ".join(
            f"{key}={metrics[key]:.2f}"
            for key in ("rollout/invalid_rate", "rollout/truncated_rate", "adv/zero_share", "rollout/success_rate")
            if key in metrics
        )
        return (
            f"no learning signal for {self.patience} iterations in a row (up to iteration {iteration}): "
            f"{' and '.join(reasons)} ({rates}), so the policy loss is 0 and the model does not change. Try: "
            "a warm start that teaches the answer format (model.warm_start.enabled=true); a larger "
            "rollout.max_response_tokens if answers are cut off (rollout/truncated_rate); rollout.format=lenient "
            "if answers miss the think block or add text around the action; and read what the model writes in "
            f"{self.run_dir / 'trajectories.jsonl'}. This is counted in alarm/no_learning."
        )
