import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ref_discounted_returns

from hgpo.advantages import discounted_returns


def test_hand_worked():
    # Trajectory 7: rewards (0, 0, 10), gamma 0.5 -> R = (2.5, 5, 10); step 1 invalid: 5 - 0.1 = 4.9, and the
    # penalty is not discounted back to step 0. Trajectory 3: one step, reward 1 -> 1. Rows shuffled.
    traj_ids = np.array([7, 3, 7, 7])
    step_ids = np.array([2, 0, 0, 1])
    rewards = np.array([10.0, 1.0, 0.0, 0.0])
    invalid = np.array([False, False, False, True])
    out = discounted_returns(traj_ids, step_ids, rewards, 0.5, invalid=invalid, invalid_penalty=0.1)
    np.testing.assert_allclose(out, [10.0, 1.0, 2.5, 4.9], rtol=0, atol=1e-12)
    assert out.dtype == np.float64


def test_long_trajectory_no_overflow():
    # gamma ** -t would overflow past t ~ 14,000 at gamma 0.95; the scan only multiplies by gamma ** 2**i.
    rng = np.random.default_rng(0)
    n = 20_000
    rewards = rng.normal(size=n)
    steps = np.arange(n)
    out = discounted_returns(np.zeros(n, dtype=np.int64), steps, rewards, 0.95)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, ref_discounted_returns([0] * n, steps, rewards, 0.95), rtol=1e-9, atol=1e-9)


def test_gamma_one_sums_rewards():
    out = discounted_returns(np.zeros(3000, dtype=np.int64), np.arange(3000), np.ones(3000), 1.0)
    np.testing.assert_array_equal(out, np.arange(3000, 0, -1, dtype=np.float64))


def test_empty_batch():
    assert discounted_returns(np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([]), 0.9).shape == (
        0,
    )


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    gamma=st.sampled_from([0.0, 0.5, 0.95, 1.0]) | st.floats(0.0, 1.0),
    penalty=st.sampled_from([0.0, 0.1]),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_matches_reference(lengths, gamma, penalty, seed, dtype):
    rng = np.random.default_rng(seed)
    traj_ids = np.repeat(rng.choice(10**6, size=len(lengths), replace=False), lengths)
    step_ids = np.concatenate([np.arange(n) for n in lengths])
    rewards = rng.uniform(-10, 10, size=len(traj_ids)).astype(dtype)
    invalid = rng.random(len(traj_ids)) < 0.3
    shuffle = rng.permutation(len(traj_ids))
    args = (traj_ids[shuffle], step_ids[shuffle], rewards[shuffle], gamma)
    out = discounted_returns(*args, invalid=invalid[shuffle], invalid_penalty=penalty)
    expected = ref_discounted_returns(*args, invalid=invalid[shuffle], invalid_penalty=penalty)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("gamma", [-0.1, 1.5, float("nan")])
def test_rejects_gamma_out_of_range(gamma):
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(np.zeros(2, dtype=np.int64), np.arange(2), np.ones(2), gamma)
