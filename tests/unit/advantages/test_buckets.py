import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hgpo.advantages.buckets import normalize_in_buckets


def test_hand_worked():
    # Key 7: {1, 3} -> mean 2; population sd 1 (ddof 0), unbiased sd sqrt(2) (ddof 1). Key 2: {5} alone -> 0.
    keys = np.array([7, 2, 7], dtype=np.uint64)
    values = np.array([1.0, 5.0, 3.0])
    advantages, shared, sizes = normalize_in_buckets(keys, values, 0, "std", 1e-6)
    np.testing.assert_allclose(advantages, [-1 / (1 + 1e-6), 0.0, 1 / (1 + 1e-6)], rtol=1e-12)
    np.testing.assert_array_equal(shared, [True, False, True])
    assert sorted(sizes.tolist()) == [1, 2]
    advantages, _, _ = normalize_in_buckets(keys, values, 1, "std", 1e-6)
    np.testing.assert_allclose(advantages, [-1 / (np.sqrt(2) + 1e-6), 0.0, 1 / (np.sqrt(2) + 1e-6)], rtol=1e-12)
    advantages, _, _ = normalize_in_buckets(keys, values, 0, "none", 1e-6)
    np.testing.assert_array_equal(advantages, [-1.0, 0.0, 1.0])


@settings(max_examples=200, deadline=None)
@given(value=st.floats(-1e6, 1e6), n=st.integers(1, 40), normalize=st.sampled_from(["std", "none"]))
def test_all_equal_values_give_exact_zero(value, n, normalize):
    # A naive mean carries rounding (0.1 * 3 / 3 != 0.1); centring on the bucket's first value does not.
    advantages, _, _ = normalize_in_buckets(np.zeros(n, dtype=np.int64), np.full(n, value), 0, normalize, 1e-6)
    np.testing.assert_array_equal(advantages, 0.0)


def test_empty():
    advantages, shared, sizes = normalize_in_buckets(np.array([], dtype=np.uint64), np.array([]), 0, "std", 1e-6)
    assert advantages.shape == shared.shape == sizes.shape == (0,)
