"""Check flat step-row inputs (one row per step, rows in any order) and order them by (trajectory, step).

Every estimator takes parallel 1-D arrays; this module turns the "inputs that cannot be right" of
spec/hgpo.md (Public interface) into ValueErrors that name the array, the row and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepOrder:
    """Rows sorted by (trajectory, step); position p holds input row `order[p]`.

    In this order a trajectory is a contiguous run with steps 0..n-1, so the row one step earlier
    than position p (when steps[p] > 0) is position p - 1.
    """

    order: np.ndarray
    """int64[N]: input row at each sorted position."""
    steps: np.ndarray
    """int64[N]: step index at each sorted position."""
    lengths: np.ndarray
    """int64[N]: number of rows of the trajectory that each sorted position belongs to."""


def check_lengths(**arrays: np.ndarray) -> int:
    """Return the common length N of the named 1-D arrays; raise ValueError naming any that differ."""
    for name, array in arrays.items():
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one value per row), got shape {array.shape}")
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"length mismatch: all arrays need one value per row, got {listed}")
    return next(iter(lengths.values()))


def as_ids(name: str, values: object) -> np.ndarray:
    """Return `values` as an integer array (any int dtype kept, e.g. uint64 hashes); TypeError otherwise."""
    ids = np.asarray(values)
    if ids.size == 0 and ids.dtype.kind == "f":
        return ids.astype(np.int64)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers (ids or uint64 hashes), got dtype {ids.dtype}")
    return ids


def as_finite(name: str, values: object) -> np.ndarray:
    """Return `values` as float64[N]; raise ValueError if any value is NaN or inf."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name} has {bad.size} NaN/inf value(s), first at row {bad[0]} ({array[bad[0]]})")
    return array


def check_normalize(normalize: str, eps: float) -> None:
    """Raise ValueError for an unknown `normalize` or an eps that could divide by zero."""
    if normalize not in ("std", "none"):
        raise ValueError(f"normalize must be one of 'std', 'none', got {normalize!r}")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be finite and > 0 (it keeps all-equal buckets finite), got {eps}")


def order_steps(traj_ids: np.ndarray, step_ids: np.ndarray) -> StepOrder:
    """Sort rows by (trajectory, step), checking that each trajectory's steps are exactly 0..n-1.

    One argsort of traj_ids, then each row is placed at (start of its trajectory + step): O(N log N).
    Raises ValueError for a negative step, a (traj, step) pair given twice, or a gap.
    """
    n = len(traj_ids)
    if step_ids.dtype.kind == "u" and n and step_ids.max() > np.iinfo(np.int64).max:
        raise ValueError(f"step_ids has a value {step_ids.max()} beyond int64; steps must be 0..n-1 per trajectory")
    steps = step_ids.astype(np.int64, copy=False)
    if n and steps.min() < 0:
        row = int(np.argmin(steps))
        raise ValueError(f"step_ids must be >= 0, got {steps[row]} at row {row} (trajectory {traj_ids[row]})")
    by_traj = np.argsort(traj_ids)
    sorted_traj = traj_ids[by_traj]
    first = np.ones(n, dtype=bool)
    np.not_equal(sorted_traj[1:], sorted_traj[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    traj_lengths = np.diff(np.append(starts, n))
    # Per position of by_traj order; the (traj, step) order keeps the same runs, so `lengths` serves both.
    lengths = np.repeat(traj_lengths, traj_lengths)
    steps_by_traj = steps[by_traj]
    slots = np.repeat(starts, traj_lengths) + steps_by_traj
    in_range = steps_by_traj < lengths
    order = np.full(n, -1, dtype=np.int64)
    if in_range.all():
        order[slots] = by_traj
    # n rows, n slots: with every step in range, an empty slot means two rows claimed the same one.
    if not in_range.all() or (order < 0).any():
        _raise_step_error(traj_ids, steps, by_traj, sorted_traj, steps_by_traj, slots, in_range, lengths)
    return StepOrder(order=order, steps=steps[order], lengths=lengths)


def _raise_step_error(traj_ids, steps, by_traj, sorted_traj, steps_by_traj, slots, in_range, lengths) -> None:
    """Name the first duplicated (traj, step) pair, or else the first step beyond its trajectory's length."""
    taken = np.bincount(slots[in_range], minlength=len(traj_ids))
    if taken.max() > 1:
        slot = int(np.argmax(taken))
        row = by_traj[in_range][np.flatnonzero(slots[in_range] == slot)[0]]
        raise ValueError(
            f"(traj_ids, step_ids) pair ({traj_ids[row]}, {steps[row]}) appears {taken[slot]} times; "
            "each step of a trajectory must be exactly one row"
        )
    bad = np.flatnonzero(~in_range)[0]
    raise ValueError(
        f"trajectory {sorted_traj[bad]} has {lengths[bad]} rows but a row at step {steps_by_traj[bad]}: "
        "steps of a trajectory must be exactly 0..n-1 (a gap)"
    )


def check_one_group_per_trajectory(
    group_ids: np.ndarray, traj_ids: np.ndarray, order: np.ndarray | None = None
) -> None:
    """Raise ValueError if a trajectory has rows in two episode groups.

    `order` is any permutation that makes each trajectory's rows contiguous (e.g. StepOrder.order);
    without it an argsort of traj_ids is made.
    """
    if order is None:
        order = np.argsort(traj_ids)
    trajs, groups = traj_ids[order], group_ids[order]
    clash = np.flatnonzero((trajs[1:] == trajs[:-1]) & (groups[1:] != groups[:-1]))
    if clash.size:
        p = clash[0]
        raise ValueError(
            f"trajectory {trajs[p]} is in episode groups {groups[p]} and {groups[p + 1]}; "
            "a trajectory belongs to exactly one group"
        )
