"""Whole trajectories as records: every turn's text and the numbers that explain its advantage.

Pure functions of a StepBatch and per-row arrays (returns, per-level advantages and bucket sizes from
hgpo.advantages.level_breakdown); `decode` turns token ids back into text for reading only (training
never re-tokenises). The tracker writes the records to <run_dir>/trajectories.jsonl and a W&B table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from hgpo.batch import StepBatch
from hgpo.rollout.parsing import parse_action

Decode = Callable[[np.ndarray, bool], str]
"""(token ids, skip_special_tokens) -> text, e.g. lambda ids, skip: tokenizer.decode(ids, skip_special_tokens=skip)."""


def tokenizer_decode(model_path: str) -> Decode:
    """`Decode` with the tokenizer of the policy in `model_path` (imports transformers)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return lambda ids, skip: tokenizer.decode(ids, skip_special_tokens=skip)


def sample_trajectories(
    group_ids: np.ndarray, traj_ids: np.ndarray, traj_won: np.ndarray, count: int, seed: int, iteration: int
) -> np.ndarray:
    """Up to `count` trajectory ids (int64), the same for the same (seed, iteration).

    Groups are taken in a random order and each one's trajectories alternate won and not won, so a sample
    of two shows a success beside a failure of the same task where the group has both: rows that share
    buckets, whose returns make each other's advantages.
    """
    rng = np.random.default_rng([seed, iteration])
    trajs, first = np.unique(traj_ids, return_index=True)
    groups, won = group_ids[first], traj_won[first]
    chosen: list[int] = []
    for group in rng.permutation(np.unique(groups)):
        mine = rng.permutation(np.flatnonzero(groups == group))
        wins, losses = mine[won[mine]], mine[~won[mine]]
        alternating = (
            [x for pair in zip(wins, losses) for x in pair] + list(wins[len(losses) :]) + list(losses[len(wins) :])
        )
        chosen += [int(trajs[i]) for i in alternating[: count - len(chosen)]]
        if len(chosen) >= count:
            break
    return np.array(chosen, dtype=np.int64)


def trajectory_records(
    batch: StepBatch,
    traj_ids: np.ndarray,
    *,
    returns: np.ndarray,
    level_advantages: np.ndarray,
    bucket_sizes: np.ndarray,
    iteration: int,
    policy_version: int,
    decode: Decode,
    response_format: Literal["strict", "lenient"],
) -> list[dict[str, Any]]:
    """One record per trajectory in `traj_ids`, turns in step order; actions parsed with the rollout's
    `response_format` (rollout.format), so they are the actions the environment was given.

    returns: float64[N]; level_advantages: float64[N, H+1] (NaN: no item at that level); bucket_sizes:
    int64[N, H+1] (0: the row does not reach that level). Each turn holds the full prompt, the response,
    the parsed action, validity, reward, return R_t, the final advantage, a_L and the bucket size per level.
    """
    records = []
    for traj in traj_ids:
        rows = np.flatnonzero(batch.traj_ids == traj)
        rows = rows[np.argsort(batch.step_ids[rows])]
        turns = []
        for r in rows:
            response = decode(batch.response_ids[r], True)
            turns.append({
                "step": int(batch.step_ids[r]),
                "prompt": decode(batch.prompt_ids[r], False),
                "response": response,
                "action": parse_action(response, response_format=response_format).action,
                "valid": not bool(batch.invalid[r]),
                "reward": float(batch.rewards[r]),
                "return": float(returns[r]),
                "advantage": float(batch.advantages[r]) if batch.advantages is not None else None,
                "level_advantages": [None if np.isnan(a) else float(a) for a in level_advantages[r]],
                "bucket_sizes": [int(s) for s in bucket_sizes[r]],
            })  # fmt: skip
        records.append({
            "iteration": iteration,
            "policy_version": policy_version,
            "group_id": int(batch.group_ids[rows[0]]),
            "traj_id": int(traj),
            "won": bool(batch.traj_won[rows[0]]),
            "failed": bool(batch.traj_failed[rows[0]]),
            "episode_return": float(batch.rewards[rows].sum()),
            "turns": turns,
        })  # fmt: skip
    return records


def table_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) with one row per turn, for a W&B table; per-level values as adv_L<k> and bucket_L<k>."""
    depth = max((len(t["bucket_sizes"]) for r in records for t in r["turns"]), default=0)
    head = ["iteration", "policy_version", "group_id", "traj_id", "won", "failed", "episode_return"]
    turn = ["step", "prompt", "response", "action", "valid", "reward", "return", "advantage"]
    columns = head + turn + [f"adv_L{k + 1}" for k in range(depth)] + [f"bucket_L{k + 1}" for k in range(depth)]
    rows = [
        [r[c] for c in head] + [t[c] for c in turn] + t["level_advantages"] + t["bucket_sizes"]
        for r in records
        for t in r["turns"]
    ]
    return columns, rows
