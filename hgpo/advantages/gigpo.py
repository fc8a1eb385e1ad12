"""GiGPO advantage: GRPO episode advantage plus a step advantage within anchor-state groups.

spec/hgpo.md, "Baselines": A = A_episode + omega * A_step, A_step normalising returns within the
level-1 bucket (same episode group, same state) with the unbiased std; a one-row bucket gives 0.
"""

from __future__ import annotations

import numpy as np

from hgpo.advantages.buckets import normalize_in_buckets
from hgpo.advantages.contexts import anchor_keys
from hgpo.advantages.grpo import episode_advantages
from hgpo.advantages.rows import (
    as_finite,
    as_ids,
    check_lengths,
    check_normalize,
    check_one_group_per_trajectory,
    order_steps,
)


def gigpo_advantages(
    group_ids: np.ndarray,
    traj_ids: np.ndarray,
    step_ids: np.ndarray,
    state_keys: np.ndarray,
    returns: np.ndarray,
    scores: np.ndarray,
    omega: float = 1.0,
    normalize: str = "std",
    eps: float = 1e-6,
) -> np.ndarray:
    """Return float64[N]: grpo_advantages(scores) + omega * (step advantage of returns).

    group_ids, traj_ids, step_ids: int [N] (steps 0..n-1 per trajectory, rows in any order);
    state_keys: int [N] (uint64 hashes); returns, scores: float [N] (float32 or float64).
    """
    group_ids, traj_ids = as_ids("group_ids", group_ids), as_ids("traj_ids", traj_ids)
    step_ids, state_keys = as_ids("step_ids", step_ids), as_ids("state_keys", state_keys)
    returns, scores = as_finite("returns", returns), as_finite("scores", scores)
    check_lengths(
        group_ids=group_ids, traj_ids=traj_ids, step_ids=step_ids, state_keys=state_keys, returns=returns, scores=scores
    )
    check_normalize(normalize, eps)
    if not np.isfinite(omega):
        raise ValueError(f"omega must be finite, got {omega}")
    check_one_group_per_trajectory(group_ids, traj_ids, order_steps(traj_ids, step_ids).order)
    # A one-row anchor bucket gives exactly 0 (normalize_in_buckets), as the spec asks.
    step_advantages, _, _ = normalize_in_buckets(anchor_keys(group_ids, state_keys), returns, 1, normalize, eps)
    return episode_advantages(group_ids, scores, normalize, eps) + omega * step_advantages
