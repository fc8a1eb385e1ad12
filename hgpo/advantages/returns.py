"""Discounted step returns of each trajectory (spec/hgpo.md, "Step returns")."""

from __future__ import annotations

import numpy as np

from hgpo.advantages.rows import as_finite, as_ids, check_lengths, order_steps


def discounted_returns(
    traj_ids: np.ndarray,
    step_ids: np.ndarray,
    rewards: np.ndarray,
    gamma: float,
    invalid: np.ndarray | None = None,
    invalid_penalty: float = 0.1,
) -> np.ndarray:
    """Return float64[N]: R_t = r_t + gamma * R_{t+1} within each trajectory, minus the row's own penalty.

    traj_ids, step_ids: int [N], rows in any order, steps 0..n-1 per trajectory; rewards: float [N];
    invalid: optional bool/0-1 [N]. `invalid_penalty * invalid_t` is subtracted from row t's return
    only, after the recursion, so it is not discounted back to earlier steps.

    Computed as R_t = sum_{j >= t} gamma**(j - t) r_j by a segmented suffix scan that doubles its reach
    each pass (ceil(log2(longest trajectory)) vectorised passes): it only multiplies by gamma**(2**i),
    which can underflow to 0 but never overflow, however long the trajectory.
    """
    traj_ids, step_ids = as_ids("traj_ids", traj_ids), as_ids("step_ids", step_ids)
    rewards = as_finite("rewards", rewards)
    arrays = {"traj_ids": traj_ids, "step_ids": step_ids, "rewards": rewards}
    if invalid is not None:
        arrays["invalid"] = invalid = as_finite("invalid", invalid)
    check_lengths(**arrays)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if not np.isfinite(invalid_penalty):
        raise ValueError(f"invalid_penalty must be finite, got {invalid_penalty}")
    rows = order_steps(traj_ids, step_ids)
    later = rows.lengths - 1 - rows.steps  # rows after each position in its trajectory
    suffix = rewards[rows.order]
    reach, factor = 1, float(gamma)
    longest = int(rows.lengths.max()) if len(rows.order) else 0
    while reach < longest:
        # After this pass suffix[p] sums the next 2 * reach rewards of p's trajectory (fewer near its end).
        head = np.flatnonzero(later[:-reach] >= reach)
        suffix[head] += factor * suffix[head + reach]
        reach, factor = 2 * reach, factor * factor
    returns = np.empty_like(suffix)
    returns[rows.order] = suffix
    if invalid is not None:
        returns -= invalid_penalty * invalid
    return returns
