"""64-bit context keys: hash (episode group, state and action sequence) into one uint64 per row.

spec/hgpo.md, "Hierarchy of groups": the level-L context of row (tau, t) is the tuple of state keys at
steps t-L+1 .. t (with `action_keys`, also the actions at steps t-L+1 .. t-1, the ones between those
states). Keys are built from the newest step backwards: level 1 hashes (g, s_t) and level L+1 prepends
the element of step t-L, key_{L+1} = extend(key_L, element_{t-L}), where an element is s_j, or the
pair (s_j, a_j) in state_action mode. Equal contexts give equal keys; unequal ones collide with
probability about 2**-64 per pair (splitmix64 mixing, wrapping uint64 arithmetic, stable across runs).
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)
_GROUP_SALT = np.uint64(0x243F6A8885A308D3)
_ACTION_SALT = np.uint64(0x13198A2E03707344)


def _finalize(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a bijection of uint64 that spreads every input bit; works in place on z."""
    z ^= z >> np.uint64(30)
    z *= _MUL1
    z ^= z >> np.uint64(27)
    z *= _MUL2
    z ^= z >> np.uint64(31)
    return z


def _as_uint64(ids: np.ndarray) -> np.ndarray:
    """Reinterpret any integer ids as uint64 (injective: negative int64 wrap), always a fresh copy."""
    return ids.astype(np.uint64, copy=True)


def extend(keys: np.ndarray, elements: np.ndarray) -> np.ndarray:
    """Return the keys of the contexts one step older: hash of (element, context) as uint64[M].

    keys: uint64[M] context keys; elements: uint64[M] (from `step_elements`) of the step just before
    each context. Order-sensitive: extend(extend(k, a), b) != extend(extend(k, b), a).
    """
    with np.errstate(over="ignore"):
        mixed = keys * _GOLDEN
        mixed += elements
        return _finalize(mixed)


def step_elements(state_keys: np.ndarray, action_keys: np.ndarray | None = None) -> np.ndarray:
    """Return uint64[N]: what one older step adds to a context, hash(s_j) or hash(s_j, a_j)."""
    with np.errstate(over="ignore"):
        elements = _finalize(_as_uint64(state_keys))
        if action_keys is None:
            return elements
        actions = _as_uint64(action_keys)
        actions ^= _ACTION_SALT
        return extend(elements, _finalize(actions))


def anchor_keys(group_ids: np.ndarray, state_keys: np.ndarray) -> np.ndarray:
    """Return uint64[N] level-1 keys: hash of (episode group, current state), GiGPO's anchor group."""
    with np.errstate(over="ignore"):
        groups = _as_uint64(group_ids)
        groups ^= _GROUP_SALT
        return extend(_finalize(groups), _finalize(_as_uint64(state_keys)))
