import numpy as np
from batches import step_batches
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ref_gigpo_advantages

from hgpo.advantages import gigpo_advantages

EPS = 1e-6


def test_hand_worked():
    # One group, two trajectories of two steps; states (A, B) and (A, C); returns (3, 1) and (1, 5).
    # Episode scores (2, 2) and (4, 4): mean 3, unbiased std sqrt(4/3) -> -+ 1 / (sqrt(4/3) + eps).
    # Anchor A holds returns 3 and 1: mean 2, unbiased std sqrt(2) -> +- 1 / (sqrt(2) + eps); B and C alone -> 0.
    group_ids = np.zeros(4, dtype=np.int64)
    traj_ids = np.array([0, 0, 1, 1])
    step_ids = np.array([0, 1, 0, 1])
    state_keys = np.array([10, 11, 10, 12], dtype=np.uint64)
    returns = np.array([3.0, 1.0, 1.0, 5.0])
    scores = np.array([2.0, 2.0, 4.0, 4.0])
    episode = 1 / (np.sqrt(4 / 3) + EPS)
    step = 1 / (np.sqrt(2) + EPS)
    out = gigpo_advantages(group_ids, traj_ids, step_ids, state_keys, returns, scores, omega=0.5)
    np.testing.assert_allclose(out, [-episode + 0.5 * step, -episode, episode - 0.5 * step, episode], rtol=1e-12)
    out = gigpo_advantages(group_ids, traj_ids, step_ids, state_keys, returns, scores, normalize="none")
    np.testing.assert_allclose(out, [-1 + 1, -1, 1 - 1, 1], atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(batch=step_batches(), normalize=st.sampled_from(["std", "none"]), omega=st.sampled_from([0.0, 0.5, 1.0]))
def test_matches_reference(batch, normalize, omega):
    args = [batch[k] for k in ("group_ids", "traj_ids", "step_ids", "state_keys", "returns", "scores")]
    np.testing.assert_allclose(
        gigpo_advantages(*args, omega=omega, normalize=normalize),
        ref_gigpo_advantages(*args, omega=omega, normalize=normalize),
        rtol=1e-9,
        atol=1e-9,
    )
