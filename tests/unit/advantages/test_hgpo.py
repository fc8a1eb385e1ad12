import numpy as np
import pytest
from batches import step_batches
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import ref_hgpo_advantages

from hgpo.advantages import hgpo_advantages

EPS = 1e-6
X, Y, Z = 10, 11, 12

# One group, three trajectories of two steps, rows listed as (traj 0: 0a 0b, traj 1: 1a 1b, traj 2: 2a 2b):
#   traj 0: states (X, Y), returns (4, 2); traj 1: (X, Y), (0, 0); traj 2: (Z, Y), (1, 2).
GROUP_IDS = np.zeros(6, dtype=np.int64)
TRAJ_IDS = np.array([0, 0, 1, 1, 2, 2])
STEP_IDS = np.array([0, 1, 0, 1, 0, 1])
STATE_KEYS = np.array([X, Y, X, Y, Z, Y], dtype=np.uint64)
RETURNS = np.array([4.0, 2.0, 0.0, 0.0, 1.0, 2.0])


def hgpo(**kwargs):
    return hgpo_advantages(GROUP_IDS, TRAJ_IDS, STEP_IDS, STATE_KEYS, RETURNS, **kwargs)


def test_hand_worked_none():
    # Level 1 (w = 2): X {4, 0} mean 2 -> 0a +2, 1a -2; Y {2, 0, 2} mean 4/3 -> 0b +2/3, 1b -4/3, 2b +2/3; Z alone.
    # Level 2 (w = 3, steps >= 1 only): (X, Y) {2, 0} mean 1 -> 0b +1, 1b -1; (Z, Y) alone.
    out = hgpo(history_length=1, normalize="none")
    expected = [
        4 / (2 + EPS),
        (4 / 3 + 3) / (5 + EPS),
        -4 / (2 + EPS),
        (-8 / 3 - 3) / (5 + EPS),
        0.0,
        (4 / 3) / (2 + EPS),
    ]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_hand_worked_weights():
    # Same items; alpha 0 -> uniform weights 1; weight_offset 0 -> w_L = L (1 and 2).
    out = hgpo(history_length=1, normalize="none", alpha=0.0)
    np.testing.assert_allclose(out[1], (2 / 3 + 1) / (2 + EPS), rtol=1e-12)
    out = hgpo(history_length=1, normalize="none", weight_offset=0)
    np.testing.assert_allclose(out[1], (2 / 3 + 2) / (3 + EPS), rtol=1e-12)
    out = hgpo(history_length=1, normalize="none", alpha=2.0)  # w = 4 and 9
    np.testing.assert_allclose(out[3], (4 * -4 / 3 + 9 * -1) / (13 + EPS), rtol=1e-12)


def test_hand_worked_std():
    # Level 1: X {4, 0}: m 2, population sd 2 -> +-2/(2+eps). Y {2, 0, 2}: m 4/3, sd sqrt(8/9).
    # Level 2: (X, Y) {2, 0}: m 1, sd 1 -> +-1/(1+eps).
    sd_y = np.sqrt(8 / 9)
    a1_0b, a1_1b = (2 / 3) / (sd_y + EPS), (-4 / 3) / (sd_y + EPS)
    a2 = 1 / (1 + EPS)
    out = hgpo(history_length=1)
    expected = [
        2 * (2 / (2 + EPS)) / (2 + EPS),
        (2 * a1_0b + 3 * a2) / (5 + EPS),
        2 * (-2 / (2 + EPS)) / (2 + EPS),
        (2 * a1_1b - 3 * a2) / (5 + EPS),
        0.0,
        2 * a1_0b / (2 + EPS),
    ]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_history_zero_is_level_one_only():
    # H = 0: only level 1 (w = 2): every item divides by 2 + eps.
    out = hgpo(history_length=0, normalize="none")
    np.testing.assert_allclose(out, np.array([2, 2 / 3, -2, -4 / 3, 0, 2 / 3]) * 2 / (2 + EPS), rtol=1e-12)


def test_hand_worked_episode_term():
    # Episode scores 10 (traj 0, 2) and 0 (traj 1): mean 20/3 -> +10/3 and -20/3 under "none", weight (0+1)**1 = 1.
    scores = np.array([10.0, 10.0, 0.0, 0.0, 10.0, 10.0])
    out = hgpo(history_length=1, normalize="none", episode_scores=scores)
    np.testing.assert_allclose(out[0], (10 / 3 + 2 * 2) / (3 + EPS), rtol=1e-12)
    np.testing.assert_allclose(out[4], (10 / 3) / (1 + EPS), rtol=1e-12)  # 2a: only the episode item
    # All-equal episode scores give exact-zero items, which are dropped: same as no episode term.
    np.testing.assert_array_equal(hgpo(history_length=1, episode_scores=np.full(6, 0.3)), hgpo(history_length=1))


def test_hand_worked_state_action():
    # Two trajectories through states (X, Y), actions 1 vs 2 at step 0; returns (0, 2) and (0, 0).
    # State mode: level 1 Y {2, 0} -> +-1 (w 2); level 2 (X, Y) {2, 0} -> +-1 (w 3): step-1 rows +-5/(5+eps).
    # state_action: the level-2 contexts differ by the action between X and Y, so only level 1: +-2/(2+eps).
    # X {0, 0} gives exact zeros, dropped: step-0 rows get 0.
    args = (np.zeros(4, dtype=np.int64), np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]), np.array([X, Y, X, Y]))
    returns = np.array([0.0, 2.0, 0.0, 0.0])
    out = hgpo_advantages(*args, returns, history_length=1, normalize="none")
    np.testing.assert_allclose(out, [0, 5 / (5 + EPS), 0, -5 / (5 + EPS)], rtol=1e-12)
    actions = np.array([1, 7, 2, 7])
    out = hgpo_advantages(*args, returns, history_length=1, normalize="none", action_keys=actions)
    np.testing.assert_allclose(out, [0, 2 / (2 + EPS), 0, -2 / (2 + EPS)], rtol=1e-12)
    # The action taken at step t itself is not part of step t's context.
    same = hgpo_advantages(*args, returns, history_length=1, normalize="none", action_keys=np.array([1, 8, 1, 9]))
    np.testing.assert_allclose(same, [0, 5 / (5 + EPS), 0, -5 / (5 + EPS)], rtol=1e-12)


def test_revisited_state_joins_one_bucket_twice():
    # One trajectory visits X at steps 0 and 2 (returns 1 and 3): level-1 bucket X {1, 3} -> -1, +1 under "none".
    out = hgpo_advantages(
        [0, 0, 0], [5, 5, 5], [0, 1, 2], [X, Y, X], [1.0, 0.0, 3.0], history_length=2, normalize="none"
    )
    np.testing.assert_allclose(out, [-2 / (2 + EPS), 0.0, 2 / (2 + EPS)], rtol=1e-12)


def test_float32_returns_match_float64():
    returns32 = RETURNS.astype(np.float32)
    a = hgpo_advantages(GROUP_IDS, TRAJ_IDS, STEP_IDS, STATE_KEYS, returns32, history_length=1)
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, hgpo(history_length=1))


def test_empty_batch():
    empty = np.array([], dtype=np.int64)
    assert hgpo_advantages(empty, empty, empty, empty, np.array([])).shape == (0,)


OPTIONS = {
    "normalize": st.sampled_from(["std", "none"]),
    "alpha": st.sampled_from([0.0, 1.0, 2.0]),
    "weight_offset": st.sampled_from([0, 1]),
    "use_actions": st.booleans(),
    "use_episode": st.booleans(),
}


def check_against_reference(batch, history_length, normalize, alpha, weight_offset, use_actions, use_episode):
    args = [batch[k] for k in ("group_ids", "traj_ids", "step_ids", "state_keys", "returns")]
    kwargs = dict(history_length=history_length, alpha=alpha, weight_offset=weight_offset, normalize=normalize)
    kwargs["action_keys"] = batch["action_keys"] if use_actions else None
    kwargs["episode_scores"] = batch["scores"] if use_episode else None
    np.testing.assert_allclose(
        hgpo_advantages(*args, **kwargs), ref_hgpo_advantages(*args, **kwargs), rtol=1e-9, atol=1e-9
    )


@settings(max_examples=300, deadline=None)
@given(batch=step_batches(), history_length=st.integers(0, 4), **OPTIONS)
def test_matches_reference(batch, history_length, **options):
    check_against_reference(batch, history_length, **options)


@settings(max_examples=60, deadline=None)
@given(batch=step_batches(max_groups=2, max_trajs=3, max_len=20), history_length=st.integers(0, 16), **OPTIONS)
def test_matches_reference_deep_histories(batch, history_length, **options):
    check_against_reference(batch, history_length, **options)


@settings(max_examples=100, deadline=None)
@given(batch=step_batches(), history_length=st.integers(0, 3), seed=st.integers(0, 2**32 - 1))
def test_row_order_does_not_matter(batch, history_length, seed):
    args = [batch[k] for k in ("group_ids", "traj_ids", "step_ids", "state_keys", "returns")]
    shuffle = np.random.default_rng(seed).permutation(len(args[0]))
    out = hgpo_advantages(*args, history_length=history_length)
    shuffled = hgpo_advantages(*[a[shuffle] for a in args], history_length=history_length)
    np.testing.assert_allclose(shuffled, out[shuffle], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [{"alpha": -1.0}, {"weight_offset": -1}, {"eps": 0.0}])
def test_rejects_bad_weights(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        hgpo(**bad)
