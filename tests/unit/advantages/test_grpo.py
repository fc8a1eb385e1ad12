import numpy as np
import pytest
from batches import step_batches
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ref_grpo_advantages

from hgpo.advantages import grpo_advantages

EPS = 1e-6


def test_hand_worked():
    # Group 0 holds three rows (two trajectories): scores 1, 2, 3 -> mean 2, unbiased std 1, A = (-1, 0, 1)/(1+eps).
    # Group 5 holds one row, score 4: mean 0, std 1 -> 4 / (1 + eps).
    group_ids = np.array([0, 0, 5, 0])
    traj_ids = np.array([1, 1, 9, 2])
    scores = np.array([1.0, 2.0, 4.0, 3.0])
    out = grpo_advantages(group_ids, traj_ids, scores)
    np.testing.assert_allclose(out, np.array([-1.0, 0.0, 4.0, 1.0]) / (1 + EPS), rtol=1e-12)
    out = grpo_advantages(group_ids, traj_ids, scores, normalize="none")
    np.testing.assert_allclose(out, [-1.0, 0.0, 4.0, 1.0], rtol=1e-12)


def test_all_equal_scores_give_exact_zero():
    out = grpo_advantages(np.zeros(3, dtype=np.int64), np.arange(3), np.full(3, 0.1))
    np.testing.assert_array_equal(out, 0.0)


@settings(max_examples=150, deadline=None)
@given(batch=step_batches(), normalize=st.sampled_from(["std", "none"]))
def test_matches_reference(batch, normalize):
    args = (batch["group_ids"], batch["traj_ids"], batch["returns"])
    np.testing.assert_allclose(
        grpo_advantages(*args, normalize=normalize),
        ref_grpo_advantages(*args, normalize=normalize),
        rtol=1e-9,
        atol=1e-9,
    )


def test_rejects_trajectory_in_two_groups():
    with pytest.raises(ValueError, match="trajectory 4 is in episode groups"):
        grpo_advantages(np.array([0, 1]), np.array([4, 4]), np.array([1.0, 2.0]))
