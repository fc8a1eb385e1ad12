"""What one iteration's batch shows beyond its scalar metrics: per-level advantages and bucket sizes,
length distributions, and a sample of whole trajectories.

Pure NumPy over a StepBatch whose advantages are set, so whichever process holds the batch (the driver,
or the learner) can describe it; the tracker sends the result to JSONL and W&B under the same names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hgpo.advantages import discounted_returns, level_breakdown
from hgpo.batch import StepBatch
from hgpo.config import AlgorithmConfig, Config, EnvConfig
from hgpo.trajectories import Decode, sample_trajectories, trajectory_records


@dataclass(frozen=True)
class Histogram:
    """Counts per bin, in W&B's own JSON layout ({"_type": "histogram", "values", "bins"})."""

    values: list[float]
    """Count (or weight) in each bin."""
    bins: list[float]
    """Bin edges, len(values) + 1."""

    def to_json(self) -> dict[str, Any]:
        return {"_type": "histogram", "values": self.values, "bins": self.bins}


def histogram(values: np.ndarray, integer: bool = False, max_bins: int = 32) -> Histogram | None:
    """Histogram of `values` (None when empty). Integer data gets one bin per value while that fits in max_bins."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    low, high = values.min(), values.max()
    if integer and high - low < max_bins:
        bins = np.arange(low, high + 2) - 0.5
    else:
        bins = max_bins
    counts, edges = np.histogram(values, bins=bins)
    return Histogram([float(c) for c in counts], [float(e) for e in edges])


@dataclass(frozen=True)
class BatchDetail:
    metrics: dict[str, float] = field(default_factory=dict)
    """Scalars: adv/level{L}/std (spread of a_L), adv/level{L}/bucket_size_max, rollout/response_tokens_max."""
    histograms: dict[str, Histogram] = field(default_factory=dict)
    """adv/advantage_hist, adv/level{L}/advantage_hist, adv/level{L}/bucket_size_hist (one count per bucket),
    rollout/prompt_tokens_hist, rollout/response_tokens_hist."""
    trajectories: list[dict[str, Any]] = field(default_factory=list)
    """trajectory_records of the sampled episodes."""


def row_levels(batch: StepBatch, algo: AlgorithmConfig, env: EnvConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(returns float64[N], a_L float64[N, H+1], bucket sizes int64[N, H+1]) of every row, as the estimator sees
    them (level_breakdown); rows of failed trajectories, which it leaves out, get 0, NaN and 0."""
    n, depth = len(batch), env.history_length + 1
    returns, level_advantages = np.zeros(n), np.full((n, depth), np.nan)
    bucket_sizes = np.zeros((n, depth), dtype=np.int64)
    ok = np.flatnonzero(~batch.traj_failed)
    if ok.size:
        traj, steps = batch.traj_ids[ok], batch.step_ids[ok]
        returns[ok] = discounted_returns(
            traj, steps, batch.rewards[ok], algo.gamma, batch.invalid[ok], env.invalid_penalty
        )
        levels = level_breakdown(
            batch.group_ids[ok], traj, steps, batch.state_keys[ok], returns[ok], history_length=env.history_length,
            normalize=algo.normalize, action_keys=batch.action_keys[ok] if algo.history_key == "state_action" else None,
        )  # fmt: skip
        level_advantages[ok], bucket_sizes[ok] = levels.advantages, levels.bucket_sizes
    return returns, level_advantages, bucket_sizes


def describe_batch(
    batch: StepBatch, cfg: Config, *, iteration: int, policy_version: int, decode: Decode | None
) -> BatchDetail:
    """Describe `batch` (advantages set) with the hierarchy of env.history_length (row_levels).
    tracking.trajectories_per_iteration episodes are sampled with (trainer.seed, iteration) and decoded with
    `decode` (None: no trajectories). Adds time/detail_s."""
    assert batch.advantages is not None, "describe the batch after its advantages are set"
    start = time.perf_counter()
    n, depth, trajectories = len(batch), cfg.env.history_length + 1, cfg.tracking.trajectories_per_iteration
    returns, level_advantages, bucket_sizes = row_levels(batch, cfg.algorithm, cfg.env)
    ok = ~batch.traj_failed
    detail = BatchDetail()
    _add(detail, "adv/advantage_hist", histogram(batch.advantages[ok]))
    _add(detail, "rollout/prompt_tokens_hist", histogram(batch.prompt_ids.lengths, integer=True))
    _add(detail, "rollout/response_tokens_hist", histogram(batch.response_ids.lengths, integer=True))
    detail.metrics["rollout/response_tokens_max"] = float(batch.response_ids.lengths.max()) if n else 0.0
    for column in range(depth):
        prefix = f"adv/level{column + 1}"
        items = level_advantages[:, column][~np.isnan(level_advantages[:, column])]
        sizes = bucket_sizes[:, column][bucket_sizes[:, column] > 0]
        detail.metrics[f"{prefix}/std"] = float(items.std()) if items.size else 0.0
        detail.metrics[f"{prefix}/bucket_size_max"] = float(sizes.max()) if sizes.size else 0.0
        _add(detail, f"{prefix}/advantage_hist", histogram(items))
        # a bucket of k rows appears k times among the rows: one value per bucket
        distinct, rows = np.unique(sizes, return_counts=True)
        _add(detail, f"{prefix}/bucket_size_hist", histogram(np.repeat(distinct, rows // distinct), integer=True))
    if trajectories and decode is not None and n:
        chosen = sample_trajectories(
            batch.group_ids, batch.traj_ids, batch.traj_won, trajectories, cfg.trainer.seed, iteration
        )
        detail.trajectories.extend(
            trajectory_records(
                batch, chosen, returns=returns, level_advantages=level_advantages, bucket_sizes=bucket_sizes,
                iteration=iteration, policy_version=policy_version, decode=decode, response_format=cfg.rollout.format,
            )
        )  # fmt: skip
    detail.metrics["time/detail_s"] = time.perf_counter() - start
    return detail


def _add(detail: BatchDetail, name: str, hist: Histogram | None) -> None:
    if hist is not None:
        detail.histograms[name] = hist
