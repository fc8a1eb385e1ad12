import numpy as np
import pytest
from batches import step_batches
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ref_level_diagnostics

from hgpo.advantages import level_diagnostics

X, Y, Z = 10, 11, 12


def test_hand_worked():
    # One group; traj 0: (X, Y) returns (4, 2); traj 1: (X, Y) (0, 0); traj 2: (Z, Y) (1, 2); traj 3: (Y) (2).
    # Level 1: buckets X {0a, 1a}, Y {0b, 1b, 2b, 3a}, Z {2a}: 3 buckets, 2 non-singleton, 7 rows / 3.
    #   Y returns {2, 0, 2, 2}: mean 1.5, all items non-zero; X {4, 0} non-zero; Z alone -> 6 of 7 rows.
    # Level 2 (rows at step >= 1): (X, Y) {0b, 1b}, (Z, Y) {2b}: 2 buckets, 1 non-singleton, 3 / 2; items 0b, 1b.
    # Inconsistency (H = 1): bucket Y holds deepest contexts (X, Y), (Z, Y) and (Y,) (traj 3 at step 0):
    #   its 4 rows are inconsistent; X holds (X,) twice, Z one row: 4 / 7.
    group_ids = np.zeros(7, dtype=np.int64)
    traj_ids = np.array([0, 0, 1, 1, 2, 2, 3])
    step_ids = np.array([0, 1, 0, 1, 0, 1, 0])
    state_keys = np.array([X, Y, X, Y, Z, Y, Y])
    returns = np.array([4.0, 2.0, 0.0, 0.0, 1.0, 2.0, 2.0])
    metrics = level_diagnostics(group_ids, traj_ids, step_ids, state_keys, returns, history_length=1)
    assert metrics == pytest.approx(
        {
            "adv/level1/buckets": 3.0,
            "adv/level1/nonsingleton_buckets": 2.0,
            "adv/level1/mean_bucket_size": 7 / 3,
            "adv/level1/nonzero_share": 6 / 7,
            "adv/level2/buckets": 2.0,
            "adv/level2/nonsingleton_buckets": 1.0,
            "adv/level2/mean_bucket_size": 3 / 2,
            "adv/level2/nonzero_share": 2 / 7,
            "adv/context_inconsistency_rate": 4 / 7,
        },
        rel=1e-12,
    )
    assert all(type(v) is float for v in metrics.values())


def test_levels_nobody_reaches_and_exact_zeros():
    # Two one-step trajectories on the same state with equal returns: level 1 has one bucket of 2 rows whose
    # items are exact zeros; level 2 and 3 have no rows at all.
    metrics = level_diagnostics([0, 0], [1, 2], [0, 0], [X, X], [1.0, 1.0], history_length=2)
    assert metrics["adv/level1/buckets"] == 1.0
    assert metrics["adv/level1/nonzero_share"] == 0.0
    assert metrics["adv/level3/buckets"] == 0.0
    assert metrics["adv/level3/mean_bucket_size"] == 0.0
    assert metrics["adv/context_inconsistency_rate"] == 0.0


@settings(max_examples=150, deadline=None)
@given(
    batch=step_batches(),
    history_length=st.integers(0, 5),
    normalize=st.sampled_from(["std", "none"]),
    use_actions=st.booleans(),
)
def test_matches_reference(batch, history_length, normalize, use_actions):
    args = [batch[k] for k in ("group_ids", "traj_ids", "step_ids", "state_keys", "returns")]
    kwargs = dict(history_length=history_length, normalize=normalize)
    kwargs["action_keys"] = batch["action_keys"] if use_actions else None
    metrics = level_diagnostics(*args, **kwargs)
    expected = ref_level_diagnostics(*args, **kwargs)
    assert metrics.keys() == expected.keys()
    assert metrics == pytest.approx(expected, rel=1e-12)
