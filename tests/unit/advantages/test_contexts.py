import ast
import pathlib

import numpy as np

from hgpo.advantages.contexts import anchor_keys, extend, step_elements


def test_keys_are_stable_across_runs():
    # Pinned values: the keys must not depend on the process (no salted hash()), or on the NumPy version.
    keys = anchor_keys(np.array([0, 1]), np.array([7, 7], dtype=np.uint64))
    assert keys.dtype == np.uint64
    assert keys.tolist() == [8597247502598371981, 6129973477278749965]


def test_keys_match_plain_integer_splitmix64():
    # The same scheme in Python ints mod 2**64, as an independent check of NumPy's wrapping arithmetic.
    mask = 2**64 - 1

    def finalize(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    def mix(key, element):
        return finalize((key * 0x9E3779B97F4A7C15 + element) & mask)

    group, state, older_state, action = -5, 2**64 - 3, 12, 4
    anchor = mix(finalize((group & mask) ^ 0x243F6A8885A308D3), finalize(state))
    older = mix(finalize(older_state), finalize(action ^ 0x13198A2E03707344))
    got_anchor = anchor_keys(np.array([group]), np.array([state], dtype=np.uint64))
    got_older = step_elements(np.array([older_state]), np.array([action]))
    assert got_anchor.tolist() == [anchor]
    assert extend(got_anchor, got_older).tolist() == [mix(anchor, older)]


def test_order_and_group_and_actions_matter():
    g, s = np.array([3]), np.array([1, 2], dtype=np.uint64)
    e = step_elements(s)
    k = anchor_keys(g, s[:1])
    assert extend(extend(k, e[:1]), e[1:]) != extend(extend(k, e[1:]), e[:1])
    assert anchor_keys(np.array([3]), s[:1]) != anchor_keys(np.array([4]), s[:1])
    assert step_elements(s[:1], np.array([0])) != step_elements(s[:1], np.array([1]))
    assert step_elements(s[:1], np.array([0])) != step_elements(s[:1])


def test_high_uint64_and_negative_ids_are_distinct():
    big = np.array([2**63, 2**63 + 1, 2**64 - 1], dtype=np.uint64)
    assert len(set(step_elements(big).tolist())) == 3
    assert len(set(anchor_keys(np.array([-1, 0, 1]), np.zeros(3, dtype=np.uint64)).tolist())) == 3


def test_package_imports_only_numpy_and_stdlib():
    allowed = {"__future__", "collections", "dataclasses", "math", "typing", "numpy", "hgpo"}
    package = pathlib.Path(__file__).parents[3] / "hgpo" / "advantages"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("hgpo"):
                    assert name.startswith("hgpo.advantages"), f"{path.name} imports {name}"
