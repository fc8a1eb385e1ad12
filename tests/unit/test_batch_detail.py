"""Per-iteration detail of a batch: histograms, per-level spread, and trajectory records that explain advantages."""

import numpy as np
import pytest

from hgpo.batch import Ragged, StepBatch
from hgpo.batch_detail import describe_batch, histogram
from hgpo.config import Config, EnvConfig, TrackingConfig
from hgpo.learner.estimate import estimate_advantages
from hgpo.rollout.loop import text_key
from hgpo.trajectories import sample_trajectories, table_rows, tokenizer_decode

# One group of three trajectories over states A B C / A B D / A B D; traj 0 wins (reward 10 at its last
# step), traj 1 answers step 1 invalidly, traj 2's environment failed (rows kept, excluded from the loss).
STATES = ["room A", "room B", "room C", "room A", "room B", "room D", "room A", "room B", "room D"]
ACTIONS = ["take red key", "open red door", "open blue door"] * 3


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def batch(tokenizer):
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    responses = [encode(f"<think> I pick an action . </think><action> {a} </action>") for a in ACTIONS]
    responses[4] = encode("open the red door please")  # not the answer format: invalid
    responses[0] = encode(f"I pick . </think><action> {ACTIONS[0]} </action>")  # rollout.format lenient: valid
    n = len(STATES)
    return StepBatch(
        group_ids=np.zeros(n, np.int64), traj_ids=np.repeat([0, 1, 2], 3), step_ids=np.tile([0, 1, 2], 3),
        state_keys=np.array([text_key(s) for s in STATES], np.uint64),
        action_keys=np.array([text_key(a) for a in ACTIONS], np.uint64),
        rewards=np.array([0, 0, 10.0, 0, 0, 0, 0, 0, 0]), invalid=np.arange(n) == 4,
        traj_won=np.repeat([True, False, False], 3), traj_failed=np.repeat([False, False, True], 3),
        prompt_ids=Ragged.from_rows([encode(f"Now : {s}") for s in STATES], np.int32),
        response_ids=Ragged.from_rows(responses, np.int32),
        response_logprobs=Ragged.from_rows([[-0.5] * len(r) for r in responses], np.float32),
    )  # fmt: skip


@pytest.fixture(scope="module")
def cfg():
    env = EnvConfig(name="keyroom", kwargs={}, history_length=1, max_steps=6)
    return Config(env=env, tracking=TrackingConfig(trajectories_per_iteration=2))


@pytest.fixture(scope="module")
def detail(batch, cfg, tiny_model_dir):
    advantages, _ = estimate_advantages(batch, cfg.algorithm, cfg.env)
    return describe_batch(
        batch.with_advantages(advantages), cfg, iteration=3, policy_version=3, decode=tokenizer_decode(tiny_model_dir)
    )


def test_histograms_count_buckets_per_level_without_the_failed_trajectory(detail):
    # level 1: A{0,1} B{0,1} C{0} D{1}: two buckets of 2, two of 1; level 2 (steps >= 1): (A,B){0,1}, (B,C), (B,D)
    level1, level2 = detail.histograms["adv/level1/bucket_size_hist"], detail.histograms["adv/level2/bucket_size_hist"]
    assert (level1.values, level1.bins) == ([2.0, 2.0], [0.5, 1.5, 2.5])
    assert (level2.values, level2.bins) == ([2.0, 1.0], [0.5, 1.5, 2.5])
    assert sum(detail.histograms["adv/advantage_hist"].values) == 6  # the failed trajectory's rows are left out
    assert sum(detail.histograms["rollout/response_tokens_hist"].values) == 9
    assert detail.histograms["adv/level1/advantage_hist"].to_json()["_type"] == "histogram"
    assert detail.metrics["adv/level1/bucket_size_max"] == 2 and detail.metrics["adv/level1/std"] > 0
    assert detail.metrics["rollout/response_tokens_max"] >= 8


def test_trajectory_records_explain_each_advantage(detail):
    records = {r["traj_id"]: r for r in detail.trajectories}
    assert len(records) == 2 and {r["won"] for r in records.values()} == {True, False}  # one success, one failure
    won = records[0]
    assert won["iteration"] == 3 and won["policy_version"] == 3 and won["episode_return"] == 10
    assert [t["step"] for t in won["turns"]] == [0, 1, 2]
    first = won["turns"][0]
    assert first["prompt"].endswith("room A") and first["action"] == "take red key" and first["valid"]
    assert first["response"].startswith("I pick")  # no <think>: the lenient format (the default) still reads it
    assert first["return"] == pytest.approx(0.95**2 * 10)
    # level 1: A holds returns {9.025 (traj 0), 0 (traj 1)}: +-1 after std normalisation; step 0 has no level 2
    assert first["level_advantages"][0] == pytest.approx(1.0, rel=1e-5) and first["level_advantages"][1] is None
    assert [t["bucket_sizes"] for t in won["turns"]] == [[2, 0], [2, 2], [1, 1]]
    assert won["turns"][2]["level_advantages"] == [None, None]  # alone in C: no items, advantage 0
    assert won["turns"][2]["advantage"] == 0.0
    other = next(r for r in records.values() if not r["won"])
    if other["traj_id"] == 1:
        assert other["turns"][1]["valid"] is False and other["turns"][1]["return"] == pytest.approx(-0.1)
    else:  # the failed trajectory: no levels at all
        assert other["failed"] and all(t["bucket_sizes"] == [0, 0] for t in other["turns"])


def test_table_has_one_row_per_turn_with_per_level_columns(detail):
    columns, rows = table_rows(detail.trajectories)
    assert {"prompt", "response", "action", "advantage", "adv_L1", "adv_L2", "bucket_L1", "bucket_L2"} <= set(columns)
    assert len(rows) == sum(len(r["turns"]) for r in detail.trajectories) and all(len(r) == len(columns) for r in rows)


def test_sample_is_repeatable_and_alternates_won_and_lost():
    groups, trajs = np.repeat([0, 0, 0, 0, 1, 1], 2), np.repeat(np.arange(6), 2)
    won = np.repeat([True, True, False, False, True, False], 2)
    a = sample_trajectories(groups, trajs, won, 4, seed=1, iteration=7)
    assert np.array_equal(a, sample_trajectories(groups, trajs, won, 4, seed=1, iteration=7))
    first_group = [t for t in a if t < 4] if a[0] < 4 else [t for t in a if t >= 4]
    assert [bool(won[2 * t]) for t in first_group[:2]] in ([True, False], [False, True])
    assert len(sample_trajectories(groups, trajs, won, 99, seed=0, iteration=0)) == 6


def test_histogram_bins():
    assert histogram(np.array([])) is None
    h = histogram(np.array([3, 3, 5]), integer=True)
    assert h.bins == [2.5, 3.5, 4.5, 5.5] and h.values == [2.0, 0.0, 1.0]
    wide = histogram(np.arange(1000), integer=True)
    assert len(wide.values) == 32 and sum(wide.values) == 1000
    assert sum(histogram(np.array([0.5, -1.0, 2.0])).values) == 3
