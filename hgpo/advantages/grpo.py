"""GRPO episode advantage: a row's score against all rows of its episode group (spec/hgpo.md, "Baselines")."""

from __future__ import annotations

import numpy as np

from hgpo.advantages.buckets import normalize_in_buckets
from hgpo.advantages.rows import as_finite, as_ids, check_lengths, check_normalize, check_one_group_per_trajectory


def grpo_advantages(
    group_ids: np.ndarray,
    traj_ids: np.ndarray,
    scores: np.ndarray,
    normalize: str = "std",
    eps: float = 1e-6,
) -> np.ndarray:
    """Return float64[N]: (score - mean) / (std + eps), or score - mean under normalize="none".

    group_ids, traj_ids: int [N]; scores: float [N], per row: the trajectory's total environment reward
    minus the row's own invalid penalty. Mean and unbiased std (ddof=1) run over all rows of the episode
    group, not one value per trajectory. A group with one row gets mean 0 and std 1. traj_ids is only
    checked (a trajectory in two groups is an error).
    """
    group_ids, traj_ids = as_ids("group_ids", group_ids), as_ids("traj_ids", traj_ids)
    scores = as_finite("scores", scores)
    check_lengths(group_ids=group_ids, traj_ids=traj_ids, scores=scores)
    check_normalize(normalize, eps)
    check_one_group_per_trajectory(group_ids, traj_ids)
    return episode_advantages(group_ids, scores, normalize, eps)


def episode_advantages(group_ids: np.ndarray, scores: np.ndarray, normalize: str, eps: float) -> np.ndarray:
    """GRPO advantages of already checked inputs (int [N], float64 [N]) -> float64[N]; see grpo_advantages."""
    advantages, shared, _ = normalize_in_buckets(group_ids, scores, 1, normalize, eps)
    alone = ~shared
    advantages[alone] = scores[alone] / (1.0 + eps) if normalize == "std" else scores[alone]
    return advantages
