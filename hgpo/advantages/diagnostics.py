"""Per-level HGPO metrics for logging: bucket counts and sizes, non-zero shares, context inconsistency."""

from __future__ import annotations

import numpy as np

from hgpo.advantages.contexts import extend
from hgpo.advantages.hgpo import Hierarchy, build_hierarchy, iter_levels
from hgpo.advantages.rows import check_normalize


def level_diagnostics(
    group_ids: np.ndarray,
    traj_ids: np.ndarray,
    step_ids: np.ndarray,
    state_keys: np.ndarray,
    returns: np.ndarray,
    history_length: int = 2,
    normalize: str = "std",
    eps: float = 1e-6,
    action_keys: np.ndarray | None = None,
) -> dict[str, float]:
    """Return a flat dict of metrics over the HGPO levels L = 1 .. H+1 (spec/hgpo.md, "Hierarchy of groups").

    Inputs as hgpo_advantages. Per level, with "rows of level L" the rows with step t >= L-1:
      adv/level{L}/buckets               distinct (group, context) buckets, one-row buckets included
      adv/level{L}/nonsingleton_buckets  buckets with at least 2 rows
      adv/level{L}/mean_bucket_size      rows of level L / buckets (0.0 when no row reaches level L)
      adv/level{L}/nonzero_share         share of all N rows whose a_L exists and is not exactly 0
    and adv/context_inconsistency_rate: share of rows whose level-1 bucket (same group, same state) holds
    rows with different deepest contexts. A row's deepest context is its level-(H+1) context, or for
    t < H its whole history, steps 0..t (with the actions between, given action_keys); contexts of
    different lengths differ, so a step-1 and a step-5 row on the same state are inconsistent.
    """
    check_normalize(normalize, eps)
    hierarchy = build_hierarchy(group_ids, traj_ids, step_ids, state_keys, returns, history_length, action_keys)
    n = len(hierarchy.order)
    metrics: dict[str, float] = {}
    for level in iter_levels(hierarchy, history_length, normalize, eps):
        prefix = f"adv/level{level.number}"
        joined = int(np.count_nonzero(hierarchy.steps >= level.number - 1))
        # Rows not listed in the level were alone one level up, so each is a one-row bucket here.
        buckets = len(level.bucket_sizes) + joined - len(level.rows)
        metrics[f"{prefix}/buckets"] = float(buckets)
        metrics[f"{prefix}/nonsingleton_buckets"] = float(np.count_nonzero(level.bucket_sizes > 1))
        metrics[f"{prefix}/mean_bucket_size"] = joined / buckets if buckets else 0.0
        metrics[f"{prefix}/nonzero_share"] = float(np.count_nonzero(level.advantages)) / n if n else 0.0
    metrics["adv/context_inconsistency_rate"] = _inconsistency_rate(hierarchy, history_length)
    return metrics


def _inconsistency_rate(hierarchy: Hierarchy, history_length: int) -> float:
    """Share of rows whose level-1 bucket holds more than one distinct deepest context."""
    n = len(hierarchy.order)
    if n == 0:
        return 0.0
    deepest = hierarchy.anchors.copy()
    for back in range(1, history_length + 1):
        rows = np.flatnonzero(hierarchy.steps >= back)
        deepest[rows] = extend(deepest[rows], hierarchy.elements[rows - back])
    _, anchor_bucket = np.unique(hierarchy.anchors, return_inverse=True)
    _, first_of_context = np.unique(deepest, return_index=True)
    contexts_per_bucket = np.bincount(anchor_bucket[first_of_context], minlength=anchor_bucket.max() + 1)
    return float(np.count_nonzero(contexts_per_bucket[anchor_bucket] > 1)) / n
