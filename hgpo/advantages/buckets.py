"""Group-by-key statistics: centre (and scale) values within the buckets that share a key.

Shared by GRPO (key = episode group), GiGPO (key = group and state) and HGPO (key = group, level and
context); see spec/hgpo.md, "Per-level advantage" and "Baselines". One argsort per call, no Python
loop over rows or buckets.
"""

from __future__ import annotations

import numpy as np


def normalize_in_buckets(
    keys: np.ndarray, values: np.ndarray, ddof: int, normalize: str, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (advantages, shared, bucket_sizes) for values grouped by equal keys.

    keys: any int dtype [M]; values: float64 [M]. advantages (float64 [M]) is `v - mean` under
    normalize="none" and `(v - mean) / (std + eps)` under "std", with std over the bucket divided by
    n - ddof; a one-row bucket gets exactly 0 (callers give it its spec meaning). shared (bool [M]) marks
    rows whose bucket has at least 2 rows; bucket_sizes (int64 [B]) lists the sizes of the B buckets.

    Values are centred on each bucket's first value before averaging, so a bucket whose values are all
    equal gets exactly 0 (HGPO drops exact zeros), whatever rounding the mean would otherwise carry.
    """
    m = len(keys)
    perm = np.argsort(keys)
    sorted_keys = keys[perm]
    first = np.ones(m, dtype=bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=first[1:])
    bucket = first.astype(np.int64)
    np.cumsum(bucket, out=bucket)
    bucket -= 1  # bucket index of each sorted position
    bucket_sizes = np.bincount(bucket)
    centred = values[perm]
    centred -= centred[first][bucket]
    centred -= (np.bincount(bucket, weights=centred) / bucket_sizes)[bucket]
    if normalize == "std":
        variance = np.bincount(bucket, weights=centred * centred) / np.maximum(bucket_sizes - ddof, 1)
        centred /= (np.sqrt(variance) + eps)[bucket]
    advantages = np.empty(m)
    advantages[perm] = centred
    shared = np.empty(m, dtype=bool)
    shared[perm] = (bucket_sizes > 1)[bucket]
    return advantages, shared, bucket_sizes
