"""bench/estimator_bias.py, bench/bias_truth.py, bench/learning_curves.py and bench/report.py: the evidence scripts."""

import argparse
import importlib
import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name):
    """A bench script as a module (bench/ is not a package; its scripts import each other by name)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


truth = load("bias_truth")
study = load("estimator_bias")
curves = load("learning_curves")
report = load("report")


def crossroads_task(trail=1, max_steps=4):
    from envs.crossroads import CrossroadsEnv

    return truth.Task(lambda: CrossroadsEnv(trail_length=trail), max_steps=max_steps)


def test_exact_values_by_hand_on_one_keyroom_room():
    """One room, uniformly random keys and doors, no invalid answers: V = gamma * 10 / 2 at the start."""
    from envs.keyroom import KeyRoomEnv

    task = truth.Task(lambda: KeyRoomEnv(num_rooms=1), max_steps=4)
    tree = truth.exact_tree(task, 0, truth.ScriptedPolicy(skill=0.0, momentum=0.0, invalid=0.0))
    assert tree[()].v == pytest.approx(0.95 * 10 / 2)
    key = next(iter(tree[()].probs))
    doors = tree[(key,)]
    assert sorted(doors.q.values()) == [0.0, 10.0] and doors.v == pytest.approx(5.0)


def test_advantages_average_to_zero_and_invalid_pays_its_penalty():
    task = crossroads_task(trail=2, max_steps=6)
    tree = truth.exact_tree(task, 3, truth.ScriptedPolicy())
    assert len(tree) > 50
    for history, node in tree.items():
        assert sum(p * (node.q[a] - node.v) for a, p in node.probs.items()) == pytest.approx(0.0, abs=1e-12)
        assert sum(node.probs.values()) == pytest.approx(1.0)
        if len(history) < task.max_steps - 1:
            # an invalid answer leaves the state alone: it is worth the next step's value, discounted, minus 0.1
            after = tree[history + (truth.INVALID,)]
            later = after.v + task.invalid_penalty * after.probs[truth.INVALID]
            assert node.q[truth.INVALID] == pytest.approx(0.95 * later - 0.1)


def test_exact_values_agree_with_monte_carlo_rollouts():
    task = crossroads_task(trail=1, max_steps=4)
    policy = truth.ScriptedPolicy()
    tree = truth.exact_tree(task, 0, policy)
    rng = random.Random(0)
    first = next(a for a in tree[()].probs if a != truth.INVALID)
    for history in [(), (first,)]:
        advantages, errors = truth.mc_advantage(task, 0, policy, history, rollouts=400, rng=rng)
        node = tree[history]
        for action, mc in advantages.items():
            assert abs(mc - (node.q[action] - node.v)) < 4 * errors[action] + 1e-9, (history, action)


def test_metrics_separate_bias_from_noise_and_ignore_zero_estimates():
    rng = np.random.default_rng(0)
    cells = np.repeat(np.arange(200), 50)
    history = cells // 2
    truth_a = np.repeat(rng.normal(0, 1, 200), 50)
    offset = np.repeat(np.where(np.arange(100) % 2, 1.0, -1.0), 100)  # per history: +-1
    estimate = truth_a + offset + rng.normal(0, 2, len(cells))
    batch = np.arange(len(cells)) % 10
    ones = np.ones((1, 10))
    m = {k: v[0] for k, v in study.metrics(estimate, truth_a, cells, history, batch, ones).items()}
    assert m["baseline_bias2"] == pytest.approx(1.0, abs=0.1) and m["bias2"] == pytest.approx(1.0, abs=0.1)
    assert m["variance"] == pytest.approx(4.0, rel=0.05) and m["mse"] == pytest.approx(5.0, rel=0.05)
    zeroed = np.where(np.arange(len(cells)) % 2, 0.0, truth_a)
    z = {k: v[0] for k, v in study.metrics(zeroed, truth_a, cells, history, batch, ones).items()}
    assert z["sign"] == 1.0 and z["zero"] == pytest.approx(0.5)


def test_study_sees_the_pooling_bias_on_crossroads(tmp_path):
    """Same batches: HGPO's deeper levels halve the baseline bias of level-1 pooling; the history oracle has none."""
    args = argparse.Namespace(tasks=4, batches=12, group_size=8, boot=5, seed=0)
    result = study.study("crossroads", "momentum", args)
    none = result["normalize"]["none"]["all"]
    pooled = none["hgpo K=0 a=1 off=1 s"]["baseline_bias2"]["value"]
    assert none["hgpo K=2 a=1 off=1 s"]["baseline_bias2"]["value"] < 0.75 * pooled
    assert abs(none["oracle: history"]["baseline_bias2"]["value"]) < 0.25 * pooled
    grid = [
        dict(zip(study.GRID, v))
        for v in itertools.product((1, 2, 4), (0.0, 1.0, 2.0), (0, 1), ("state", "state_action"), (False, True))
    ]
    assert all(study.hgpo_label(v) in none for v in grid) and len(grid) == 72
    assert {"grpo", "gigpo", "oracle: window", "oracle: history"} <= set(none)
    assert all(set(m) >= {"bias", "variance", "mse", "sign"} for m in result["normalize"]["std"]["all"].values())
    table = study.markdown_table(result)
    assert all(f"| {name} |" in table for name in study.table_names()) and "| bias |" in table
    lo, hi = none["gigpo"]["mse"]["ci95"]
    assert lo <= none["gigpo"]["mse"]["value"] <= hi
    study.plot({"crossroads": {"momentum": result}}, tmp_path / "bias.png")
    assert (tmp_path / "bias.png").read_bytes()[:4] == b"\x89PNG"
    meta = {"command": "bench/estimator_bias.py --batches 12", "commit": "abc", "machine": "m", "wall_s": 1.0}
    meta |= {"load_before": "l0", "load_after": "l1"}
    study.write_baseline(meta, {"crossroads": {"momentum": result}}, tmp_path / "baseline.json")
    saved = json.loads((tmp_path / "baseline.json").read_text())["results"]["crossroads"]["momentum"]
    mse = saved["normalize"]["none"]["all"]["gigpo"]["mse"]
    assert mse["value"] == pytest.approx(none["gigpo"]["mse"]["value"], rel=1e-3) and len(mse["ci95"]) == 2
    docs = study.render_docs({"crossroads": {"momentum": result}}, meta)
    assert docs.startswith("Generated by `bench/estimator_bias.py --batches 12` at commit abc") and table in docs


def test_curve_summaries():
    rising = [0.1, 0.2, 0.4, 0.6, 0.7, 0.95, 0.95, 1.0]
    flat = [0.1] * 8
    assert curves.first_reaching(np.array(rising), 0.5) == 4  # mean of 0.4, 0.6, 0.7
    assert curves.first_reaching(np.array(flat), 0.5) is None
    s = curves.summarize({0: rising, 1: flat, 2: rising[:5]}, iterations=8)
    assert s["seeds"] == [0, 1] and s["to50"] == [4, None]
    assert s["final"][0] == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert curves.fmt_iters([4, None], 8) == ">7 (1/2)" and curves.fmt_iters([4, 6, None], 8) == "6 (2/3)"
    other = curves.summarize({0: flat, 1: rising}, iterations=8)
    mean, half, n = curves.paired_difference(s, other)
    gap = np.mean(rising) - np.mean(flat)
    assert (
        n == 2
        and mean == pytest.approx(0.0)
        and half == pytest.approx(12.71 * np.std([gap, -gap], ddof=1) / np.sqrt(2))
    )
    table = curves.markdown({"keyroom": {"hgpo": s, "gigpo": other}}, {"keyroom": 8})
    assert "| keyroom | gigpo | 2 |" in table and "+0.000" in table


def test_replace_section_keeps_the_rest(tmp_path):
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nintro\n")
    report.replace_section(doc, "demo", "first")
    report.replace_section(doc, "demo", "second")
    text = doc.read_text()
    assert text.startswith("# Results\n\nintro\n") and "second" in text and "first" not in text
    assert text.count("<!-- demo:begin -->") == 1


def write_run(runs, env, variant, seed, curve, eval_success=None, torn=False, legacy=False):
    """A run directory as hgpo-train leaves it: one metrics.jsonl line per iteration (eval on the last one), the
    trainer's run.json and the runner's record (`legacy`: an older run's, written to run.json instead)."""
    path = curves.run_dir(runs, env, variant, seed)
    path.mkdir(parents=True)
    lines = []
    for i, success in enumerate(curve):
        row = {"iteration": i, "rollout/success_rate": success}
        if eval_success is not None and i == len(curve) - 1:
            row[curves.EVAL_KEY] = eval_success
        lines.append(json.dumps(row))
    (path / "metrics.jsonl").write_text("\n".join(lines) + ('\n{"iteration": 9, "rollo' if torn else "\n"))
    (path / "run.json").write_text(json.dumps({"name": "the trainer's own record", "wandb_id": None}))
    (path / ("run.json" if legacy else curves.RECORD)).write_text(json.dumps({"rc": 0, "wall_s": 100.0 + seed}))


def test_dynamics_table_reports_the_plateau_and_the_end_of_each_finished_run(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "crossroads-nosign", "hgpo", 0, [0.5] * 30 + [0.95] * 10)
    path = curves.run_dir(runs, "crossroads-nosign", "hgpo", 0)
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    for i, row in enumerate(rows):  # entropy 0.3 until iteration 29, then 0.1; zero share 0.2 from iteration 30
        row |= {"loss/entropy": 0.3 if i < 30 else 0.1, "adv/zero_share": 0.0 if i < 30 else 0.2}
        if i % 10 == 9:  # held-out evaluation every 10 iterations: 0.5, 0.5, 0.5, 1.0
            row[curves.EVAL_KEY] = 1.0 if i == 39 else 0.5
    (path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    write_run(runs, "crossroads-nosign", "grpo", 0, [0.5] * 40)  # no learner metrics: left out
    table = curves.dynamics_table(runs, ["crossroads-nosign"], ["grpo", "hgpo"], [0, 1], {"crossroads-nosign": 40})
    (row,) = [line for line in table.splitlines() if line.startswith("| crossroads-nosign")]
    # 90% first reached by the 3-iteration mean at iteration 32; iterations 20-39 average half and half
    assert row == "| crossroads-nosign | hgpo | 0 | 32 | 39 | 0.20 | 0.10 | 0.10 | 0.20 |"
    assert curves.dynamics_table(runs, ["crossroads-nosign"], ["grpo"], [0], {"crossroads-nosign": 40}) == ""


def test_render_writes_table_plot_json_and_docs_section(tmp_path, monkeypatch):
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text("# Results\n\nkept\n")
    rising, flat = [0.1, 0.3, 0.5, 0.7, 0.9, 1.0], [0.1] * 6
    for seed in (0, 1):
        write_run(runs, "keyroom", "hgpo", seed, rising, eval_success=0.8 + 0.1 * seed)
        write_run(runs, "keyroom", "grpo", seed, flat, torn=seed == 1, legacy=seed == 1)
    write_run(runs, "keyroom", "gigpo", 0, rising[:4])  # unfinished: left out
    monkeypatch.setattr(curves, "ROOT", tmp_path)
    argv = ["learning_curves.py", "--render-only", "--envs", "keyroom", "--variants", "grpo", "gigpo", "hgpo"]
    argv += ["--seeds", "0", "1", "--iterations", "6", "--runs-dir", str(runs), "--docs-dir", str(docs)]
    monkeypatch.setattr(sys, "argv", argv)
    curves.main()
    text = (docs / "results.md").read_text()
    assert text.startswith("# Results\n\nkept\n") and "<!-- learning-curves-table:begin -->" in text
    hgpo_row = next(line for line in text.splitlines() if line.startswith("| keyroom | hgpo |"))
    # first 0.10; mean success 0.58; final (0.7 + 0.9 + 1.0) / 3; eval 0.80 and 0.90; 50% at iteration 3, 90% never
    assert hgpo_row.split(" | ")[2:9] == [
        "2",
        "0.10",
        "0.58 ± 0.00",
        "0.87 ± 0.00",
        "0.85 ± 0.07 (2 seeds)",
        "3 (2/2)",
    ] + ["never (0/2)"]
    grpo_row = next(line for line in text.splitlines() if line.startswith("| keyroom | grpo |"))
    assert "| - |" in grpo_row and f"{np.mean(flat) - np.mean(rising):+.3f} ± 0.000 (2 seeds)" in grpo_row
    assert "| keyroom | gigpo |" not in text and "![learning curves](images/learning_curves.png)" in text
    assert (docs / "images" / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    (saved,) = (tmp_path / "bench" / "results").glob("learning_curves-runs-*.json")
    # 4 finished runs (the torn last line is dropped); wall times from the runners' records, old-style one included
    assert "from 4 finished runs" in text and "wall time of the 5 with the runner's record" in text
    assert "median 100 s, range 100-101 s" in text
    saved = json.loads(saved.read_text())
    assert sorted((r["variant"], r["seed"], r["wall_s"]) for r in saved["runs"]) == [
        ("gigpo", 0, 100.0), ("grpo", 0, 100.0), ("grpo", 1, 101.0), ("hgpo", 0, 100.0), ("hgpo", 1, 101.0)
    ]  # fmt: skip
    summary = saved["summary"]["keyroom"]
    assert summary["hgpo"]["eval"] == [pytest.approx(0.8), pytest.approx(0.9)] and summary["gigpo"] == {"seeds": []}


FAKE_TRAIN = """#!/bin/sh
# hgpo-train stand-in: fails on its first call (no iteration), then writes trainer.iterations lines of metrics.
calls=$(cat "$0.calls" 2>/dev/null || echo 0); echo $((calls + 1)) > "$0.calls"
for arg in "$@"; do case "$arg" in hydra.run.dir=*) dir=${arg#*=};; trainer.iterations=*) n=${arg#*=};; esac; done
[ "$calls" -eq 0 ] && exit 1
i=0; while [ $i -lt "$n" ]; do
  echo "{\\"iteration\\": $i, \\"rollout/success_rate\\": 0.5}" >> "$dir/metrics.jsonl"; i=$((i+1))
done
"""


def test_runner_retries_a_failed_start_and_skips_finished_runs(tmp_path, monkeypatch):
    train = tmp_path / ".venv" / "bin" / "hgpo-train"
    train.parent.mkdir(parents=True)
    train.write_text(FAKE_TRAIN)
    train.chmod(0o755)
    monkeypatch.setattr(curves, "ROOT", tmp_path)
    monkeypatch.setattr(curves, "warm_start", lambda overrides: "/policy")
    runs = tmp_path / "runs"
    assert curves.run_one(runs, "keyroom", "hgpo", ["algorithm=hgpo"], 0, 3, timeout_s=60)
    record = json.loads((curves.run_dir(runs, "keyroom", "hgpo", 0) / curves.RECORD).read_text())
    assert record["attempt"] == 2 and record["rc"] == 0 and "model.path=/policy" in record["command"]
    assert 0 <= record["warm_start_s"] < record["wall_s"]
    assert curves.read_success(curves.run_dir(runs, "keyroom", "hgpo", 0)) == [0.5] * 3
    assert not curves.run_one(runs, "keyroom", "hgpo", ["algorithm=hgpo"], 0, 3, timeout_s=60)
    assert train.with_name("hgpo-train.calls").read_text().strip() == "2"  # the finished run did not run again

    def broken(overrides):
        raise subprocess.CalledProcessError(1, "warm start", stderr="Traceback\nOSError: disk full")

    monkeypatch.setattr(curves, "warm_start", broken)
    assert curves.run_one(runs, "keyroom", "hgpo", ["algorithm=hgpo"], 1, 3, timeout_s=60)
    record = json.loads((curves.run_dir(runs, "keyroom", "hgpo", 1) / curves.RECORD).read_text())
    assert record["attempt"] == curves.ATTEMPTS and "disk full" in record["rc"]


def test_iterations_and_plan():
    assert curves.parse_iterations(["20", "sokoban=40"], ["keyroom", "sokoban"]) == {"keyroom": 20, "sokoban": 40}
    defaults = curves.parse_iterations([], ["keyroom", "crossroads-nosign"])
    assert defaults == {"keyroom": curves.DEFAULT_ITERATIONS, "crossroads-nosign": 80}  # past the memoryless plateau
    with pytest.raises(SystemExit, match="unknown environment 'maze'"):
        curves.parse_iterations(["maze=3"], ["keyroom"])
    args = argparse.Namespace(
        seeds=[0, 1],
        envs=["keyroom", "crossroads"],
        variants=["grpo", "hgpo", "ablation"],
        ablation_envs=["crossroads"],
    )
    plan = curves.planned_runs(args)
    assert len(plan) == 2 * (2 + 2 + len(curves.ABLATION)) and plan[0][3] == 0 and plan[-1][3] == 1
    args.variants = ["hgpo", "hgpo K=1"]  # a single knob, on the ablation's environments only
    plan = curves.planned_runs(args)
    assert [(env, variant) for env, variant, _, seed in plan if seed == 0] == [
        ("keyroom", "hgpo"), ("crossroads", "hgpo"), ("crossroads", "hgpo K=1")
    ]  # fmt: skip
    assert plan[-1][2] == ["algorithm=hgpo", "env.history_length=1"]


def test_preflight_names_a_run_config_that_does_not_validate():
    curves.preflight([("keyroom", "hgpo", ["algorithm=hgpo"], 0)])
    with pytest.raises(SystemExit, match="algorithm.alphaa"):
        curves.preflight([("keyroom", "hgpo", ["algorithm=hgpo", "algorithm.alphaa=2"], 0)])


def test_boot_all_gives_every_grid_estimator_an_interval():
    args = argparse.Namespace(tasks=2, batches=4, group_size=4, boot=3, seed=0, boot_all=True)
    metrics = study.study("keyroom", "memoryless", args)["normalize"]["std"]["mixed"]
    assert len(metrics) == 80 and all(m["mse"]["ci95"] is not None for m in metrics.values())
    args.boot_all = False
    metrics = study.study("keyroom", "memoryless", args)["normalize"]["std"]["mixed"]
    assert sum(m["mse"]["ci95"] is not None for m in metrics.values()) == len(study.table_names())
