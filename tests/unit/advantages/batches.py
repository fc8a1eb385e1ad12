"""Hypothesis strategy for small random step batches that hit the estimators' corner cases.

Small state/action alphabets give revisited states and shared contexts; returns are multiples of 1/4
so that "a_L is exactly 0" means the same in float arithmetic and in the exact reference.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def step_batches(draw, max_groups: int = 3, max_trajs: int = 4, max_len: int = 8) -> dict[str, np.ndarray]:
    """A dict of parallel arrays: group_ids, traj_ids, step_ids, state_keys, action_keys, returns, scores."""
    n_groups = draw(st.integers(1, max_groups))
    group_values = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n_groups, max_size=n_groups, unique=True))
    lengths, groups = [], []
    for group in group_values:
        n_trajs = draw(st.integers(1, max_trajs))
        lengths += draw(st.lists(st.integers(1, max_len), min_size=n_trajs, max_size=n_trajs))
        groups += [group] * n_trajs
    traj_values = draw(
        st.lists(st.integers(-(2**62), 2**62), min_size=len(lengths), max_size=len(lengths), unique=True)
    )
    n = sum(lengths)
    alphabet = draw(st.integers(1, 4))
    states = np.array(draw(st.lists(st.integers(0, alphabet - 1), min_size=n, max_size=n)), dtype=np.uint64)
    if draw(st.booleans()):  # uint64 hashes at and above 2**63
        states = states * np.uint64(0x9E3779B97F4A7C15) | np.uint64(2**63)
    else:
        states = states.astype(np.int64)
    actions = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    if draw(st.booleans()):
        returns = np.full(n, draw(st.integers(-8, 8)) / 4)  # every bucket all-equal
    else:
        returns = np.array(draw(st.lists(st.integers(-12, 12), min_size=n, max_size=n))) / 4
    returns = returns.astype(draw(st.sampled_from([np.float32, np.float64])))
    scores = np.array(draw(st.lists(st.integers(-8, 8), min_size=n, max_size=n))) / 4
    batch = {
        "group_ids": np.repeat(np.array(groups, dtype=np.int64), lengths),
        "traj_ids": np.repeat(np.array(traj_values, dtype=np.int64), lengths),
        "step_ids": np.concatenate([np.arange(length) for length in lengths]),
        "state_keys": states,
        "action_keys": actions,
        "returns": returns,
        "scores": scores,
    }
    shuffle = np.array(draw(st.permutations(range(n))), dtype=np.int64)
    return {name: values[shuffle] for name, values in batch.items()}
