import json
import logging
from pathlib import Path

import pytest

from hgpo.alarm import PATIENCE, STALL_SUCCESS, STALL_WINDOW, STALL_ZERO_SHARE, NoLearningAlarm

STUCK = {"rollout/invalid_rate": 1.0, "rollout/truncated_rate": 1.0, "adv/zero_share": 1.0, "rollout/success_rate": 0.0}
LEARNING = {"rollout/invalid_rate": 0.02, "adv/zero_share": 0.4, "rollout/success_rate": 0.1}


def run(alarm, sequence):
    return [alarm.check(i, m)["alarm/no_learning"] for i, m in enumerate(sequence)]


def test_fires_once_after_patience_iterations_without_signal(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hgpo.alarm"):
        flags = run(NoLearningAlarm(tmp_path), [STUCK] * (PATIENCE + 2))
    assert flags == [0.0] * (PATIENCE - 1) + [1.0] * 3
    (record,) = caplog.records  # one warning, not one per iteration
    text = record.getMessage()
    assert f"no learning signal for {PATIENCE} iterations in a row" in text
    assert "answers are invalid and every advantage is 0" in text
    for hint in ("model.warm_start.enabled=true", "rollout.max_response_tokens", "rollout.format=lenient"):
        assert hint in text
    assert str(tmp_path / "trajectories.jsonl") in text


@pytest.mark.parametrize(
    "stuck",
    [
        {"rollout/invalid_rate": 0.97, "adv/zero_share": 0.5, "rollout/success_rate": 0.0},  # invalid, some signal
        {"rollout/invalid_rate": 0.0, "adv/zero_share": 1.0, "rollout/success_rate": 0.5},  # every advantage 0
        {"rollout/invalid_rate": 0.0, "rollout/success_rate": 0.0},  # every trajectory failed: no adv/ metrics
    ],
)
def test_either_condition_alone_counts(tmp_path, stuck):
    assert run(NoLearningAlarm(tmp_path), [stuck] * PATIENCE)[-1] == 1.0


def test_a_streak_is_broken_by_an_iteration_with_signal_and_a_solved_task_is_not_stuck(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hgpo.alarm"):
        flags = run(NoLearningAlarm(tmp_path), [STUCK, STUCK, LEARNING] * 3)
        solved = {"rollout/invalid_rate": 0.0, "adv/zero_share": 1.0, "rollout/success_rate": 1.0}
        flags += run(NoLearningAlarm(tmp_path), [solved] * 5)
    assert flags == [0.0] * 14 and not caplog.records


RECORDED = json.loads((Path(__file__).parents[1] / "fixtures" / "alarm_metrics.json").read_text())["runs"]


def stall_flags(alarm, sequence):
    return [alarm.check(i, m)["alarm/stalled"] for i, m in enumerate(sequence)]


def test_the_stall_alarm_fires_on_the_recorded_stalled_and_failed_runs_and_not_on_the_learning_ones(tmp_path, caplog):
    first = {}
    for name, metrics in RECORDED.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hgpo.alarm"):
            flags = stall_flags(NoLearningAlarm(tmp_path), metrics)
        first[name] = flags.index(1.0) if 1.0 in flags else None
        stall_warnings = [r for r in caplog.records if "learning stalled" in r.getMessage()]
        # One warning per streak: as many as the times the flag turns on.
        turns_on = sum(1 for a, b in zip([0.0, *flags], flags) if b > a)
        assert len(stall_warnings) == turns_on, name
    assert first == {
        "crossroads-nosign hgpo seed 1 (stalled)": 49,
        "crossroads-nosign gigpo seed 1 (learned)": None,
        "crossroads-nosign hgpo seed 3 (learned)": None,
        "sokoban hgpo seed 0 (learned nothing)": 11,
    }


def test_the_stall_alarm_needs_a_full_window_of_zero_advantages_and_low_success(tmp_path, caplog):
    stuck = {"adv/zero_share": 0.6, "rollout/success_rate": 0.5, "loss/entropy": 0.12}
    with caplog.at_level(logging.WARNING, logger="hgpo.alarm"):
        flags = stall_flags(NoLearningAlarm(tmp_path), [stuck] * (STALL_WINDOW + 1))
    assert flags == [0.0] * (STALL_WINDOW - 1) + [1.0, 1.0]
    (record,) = caplog.records
    text = record.getMessage()
    assert f"learning stalled for {STALL_WINDOW} iterations" in text and "success averaged 50%" in text
    assert "policy entropy 0.12" in text and "alarm/stalled" in text
    for hint in ("rollout.temperature", "learner.entropy_coef", "rollout.group_size"):
        assert hint in text
    # One iteration with enough signal breaks the window; a converged policy (success >= 0.9) is no stall.
    signal = stuck | {"adv/zero_share": STALL_ZERO_SHARE - 0.01}
    assert 1.0 not in stall_flags(NoLearningAlarm(tmp_path), [stuck] * 5 + [signal] + [stuck] * (STALL_WINDOW - 1))
    converged = stuck | {"rollout/success_rate": STALL_SUCCESS}
    assert 1.0 not in stall_flags(NoLearningAlarm(tmp_path), [converged] * (2 * STALL_WINDOW))


def test_a_run_without_any_signal_gets_the_no_learning_alarm_only(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hgpo.alarm"):
        alarm = NoLearningAlarm(tmp_path)
        results = [alarm.check(i, STUCK) for i in range(2 * STALL_WINDOW)]
    assert [r["alarm/stalled"] for r in results] == [0.0] * (2 * STALL_WINDOW)
    assert [r.getMessage()[:19] for r in caplog.records] == ["no learning signal "]
