"""Inputs that cannot be right raise ValueError naming the problem, in every estimator that takes them."""

import numpy as np
import pytest

from hgpo.advantages import (
    discounted_returns,
    gigpo_advantages,
    grpo_advantages,
    hgpo_advantages,
    level_diagnostics,
)


def good_batch():
    # Two groups; trajectories 1, 2 (group 0) and 3 (group 1); rows shuffled.
    return {
        "group_ids": np.array([0, 0, 1, 0, 0]),
        "traj_ids": np.array([1, 2, 3, 1, 2]),
        "step_ids": np.array([0, 1, 0, 1, 0]),
        "state_keys": np.array([5, 6, 5, 6, 5], dtype=np.uint64),
        "returns": np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
    }


ESTIMATORS = {
    "returns": lambda b, **kw: discounted_returns(b["traj_ids"], b["step_ids"], b["returns"], 0.95, **kw),
    "grpo": lambda b, **kw: grpo_advantages(b["group_ids"], b["traj_ids"], b["returns"], **kw),
    "gigpo": lambda b, **kw: gigpo_advantages(
        b["group_ids"], b["traj_ids"], b["step_ids"], b["state_keys"], b["returns"], b["returns"], **kw
    ),
    "hgpo": lambda b, **kw: hgpo_advantages(
        b["group_ids"], b["traj_ids"], b["step_ids"], b["state_keys"], b["returns"], **kw
    ),
    "diagnostics": lambda b, **kw: level_diagnostics(
        b["group_ids"], b["traj_ids"], b["step_ids"], b["state_keys"], b["returns"], **kw
    ),
}
USES_STEPS = ["returns", "gigpo", "hgpo", "diagnostics"]
USES_GROUPS = ["grpo", "gigpo", "hgpo", "diagnostics"]


@pytest.mark.parametrize("name", ESTIMATORS)
def test_good_batch_passes(name):
    ESTIMATORS[name](good_batch())


@pytest.mark.parametrize("name", ESTIMATORS)
def test_length_mismatch_names_the_arrays(name):
    batch = good_batch()
    batch["traj_ids"] = batch["traj_ids"][:4]
    with pytest.raises(ValueError, match=r"length mismatch: .*traj_ids=4, .*=5"):
        ESTIMATORS[name](batch)


@pytest.mark.parametrize("name", USES_STEPS)
def test_duplicate_step(name):
    batch = good_batch()
    batch["step_ids"][3] = 0  # trajectory 1 now has step 0 twice
    with pytest.raises(ValueError, match=r"pair \(1, 0\) appears 2 times"):
        ESTIMATORS[name](batch)


@pytest.mark.parametrize("name", USES_STEPS)
def test_gap_in_steps(name):
    batch = good_batch()
    batch["step_ids"][3] = 2  # trajectory 1: steps 0, 2
    with pytest.raises(ValueError, match=r"trajectory 1 .*step 2.*0\.\.n-1 \(a gap\)"):
        ESTIMATORS[name](batch)


@pytest.mark.parametrize("name", USES_STEPS)
def test_negative_step(name):
    batch = good_batch()
    batch["step_ids"][2] = -1
    with pytest.raises(ValueError, match="step_ids must be >= 0"):
        ESTIMATORS[name](batch)


@pytest.mark.parametrize("name", USES_GROUPS)
def test_trajectory_in_two_groups(name):
    batch = good_batch()
    batch["group_ids"][3] = 1  # trajectory 1: rows in groups 0 and 1
    with pytest.raises(ValueError, match="trajectory 1 is in episode groups"):
        ESTIMATORS[name](batch)


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(name, bad):
    batch = good_batch()
    batch["returns"][2] = bad
    with pytest.raises(ValueError, match=r"(returns|rewards|scores) has 1 NaN/inf value\(s\), first at row 2"):
        ESTIMATORS[name](batch)


@pytest.mark.parametrize("name", ["grpo", "gigpo", "hgpo", "diagnostics"])
def test_unknown_normalize_lists_choices(name):
    with pytest.raises(ValueError, match=r"normalize must be one of 'std', 'none', got 'mean'"):
        ESTIMATORS[name](good_batch(), normalize="mean")


@pytest.mark.parametrize("name", ["hgpo", "diagnostics"])
@pytest.mark.parametrize("history_length", [-1, 1.5, True])
def test_bad_history_length(name, history_length):
    with pytest.raises(ValueError, match="history_length must be an integer >= 0"):
        ESTIMATORS[name](good_batch(), history_length=history_length)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_float_ids_are_refused(name):
    batch = good_batch()
    batch["traj_ids"] = batch["traj_ids"].astype(np.float64)
    with pytest.raises(TypeError, match="traj_ids must hold integers"):
        ESTIMATORS[name](batch)


def test_two_dimensional_input():
    batch = good_batch()
    batch["returns"] = batch["returns"][:, None]
    with pytest.raises(ValueError, match="returns must be 1-D"):
        ESTIMATORS["hgpo"](batch)


def test_optional_arrays_are_checked():
    batch = good_batch()
    with pytest.raises(ValueError, match="length mismatch.*action_keys=2"):
        ESTIMATORS["hgpo"](batch, action_keys=np.array([1, 2]))
    with pytest.raises(ValueError, match="episode_scores has 1 NaN"):
        ESTIMATORS["hgpo"](batch, episode_scores=np.array([1.0, np.nan, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="length mismatch.*episode_scores=3"):
        ESTIMATORS["hgpo"](batch, episode_scores=np.zeros(3))
    with pytest.raises(ValueError, match="invalid has 1 NaN"):
        ESTIMATORS["returns"](batch, invalid=np.array([0.0, np.nan, 0.0, 0.0, 0.0]))
