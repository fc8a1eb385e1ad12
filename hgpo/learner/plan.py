"""Work plans of an update: which rows each rank runs, in which micro-batches, in which mini-batch.

Mini-batches are drawn from one global permutation, so their composition does not depend on the number
of ranks: a 2-rank update computes the same gradients as a 1-rank update (up to float summation order).
Every rank gets the same number of micro-batches (padded with empty ones) because each FSDP forward
and backward is a collective that all ranks must enter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def micro_batches(lengths: np.ndarray, rows: np.ndarray, token_budget: int) -> list[np.ndarray]:
    """Split `rows` into micro-batches whose padded size (rows x longest) stays within `token_budget`.

    Rows are sorted by length first so that each micro-batch pads little; a row longer than the budget
    gets a micro-batch of its own.
    """
    order = rows[np.argsort(lengths[rows], kind="stable")]
    batches, current, longest = [], [], 0
    for row in order:
        longest_if_added = max(longest, int(lengths[row]))
        if current and longest_if_added * (len(current) + 1) > token_budget:
            batches.append(np.asarray(current))
            current, longest_if_added = [], int(lengths[row])
        current.append(row)
        longest = longest_if_added
    if current:
        batches.append(np.asarray(current))
    return batches


def split_across_ranks(lengths: np.ndarray, rows: np.ndarray, world_size: int) -> list[np.ndarray]:
    """Deal `rows` to ranks round-robin in order of length, so every rank gets a similar token load."""
    order = rows[np.argsort(-lengths[rows], kind="stable")]
    return [np.sort(order[r::world_size]) for r in range(world_size)]


def rank_micro_batches(
    lengths: np.ndarray, rows: np.ndarray, token_budget: int, rank: int, world_size: int
) -> list[np.ndarray]:
    """This rank's micro-batches of `rows`, padded with empty arrays to the count of the busiest rank."""
    per_rank = [micro_batches(lengths, share, token_budget) for share in split_across_ranks(lengths, rows, world_size)]
    count = max(len(m) for m in per_rank)
    mine = per_rank[rank]
    return mine + [np.zeros(0, dtype=np.int64)] * (count - len(mine))


@dataclass(frozen=True)
class MiniBatch:
    token_count: int
    """Response tokens of the whole mini-batch over all ranks: the token-mean denominator."""
    micro_batches: list[np.ndarray]
    """This rank's micro-batches (some possibly empty)."""


def update_plan(
    lengths: np.ndarray,
    response_lengths: np.ndarray,
    rows: np.ndarray,
    *,
    epochs: int,
    num_minibatches: int,
    token_budget: int,
    rank: int,
    world_size: int,
    rng: np.random.Generator,
) -> list[MiniBatch]:
    """epochs x num_minibatches mini-batches (one optimizer step each), from one permutation per epoch."""
    plan = []
    for _ in range(epochs):
        for minibatch in np.array_split(rng.permutation(rows), num_minibatches):
            if len(minibatch) == 0:
                continue
            plan.append(
                MiniBatch(
                    token_count=int(response_lengths[minibatch].sum()),
                    micro_batches=rank_micro_batches(lengths, minibatch, token_budget, rank, world_size),
                )
            )
    return plan
