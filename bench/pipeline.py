"""Benchmark the schedulers: iterations per second and success after a fixed number of iterations.

Cases, each over the same seeds (trainer.seed; every run starts from the same warm-started policy, the
default job's for seed 0, so seeds vary the environments and the sampling):
- default-k{0,1,2}: the default job with trainer.max_staleness = 0, 1, 2;
- slow-k{0,1,2}: the same with every environment step taking 20 ms (FaultyEnv around KeyRoom, no faults,
  step_delay_s=0.02, or --step-delay: an environment behind a network call);
- default-colocated: the default job with trainer.placement=colocated (k = 0).
Each run is `hgpo-train` in its own process and local Ray, without evaluation and report (not measured).
Iterations per second count iterations 1..n-1 (iteration 0 also starts the actors); success is the mean of the
last 3 iterations' rollout/success_rate.
Cases run interleaved (one seed of every case, then the next seed) so that a change in the machine's load
falls on all cases alike; `uptime`'s load average is recorded before every run.

    .venv/bin/python bench/pipeline.py                                  # every case, seeds 0 1 2, 30 iterations
    .venv/bin/python bench/pipeline.py --cases slow-k0 slow-k1 --seeds 0 --iterations 10
    .venv/bin/python bench/pipeline.py --extra learner.torch_threads=1   # overrides added to every run
    # one core per role on a 2-core machine (the learner and the generators on devices of their own, as on GPUs):
    .venv/bin/python bench/pipeline.py --iterations 20 \
        --extra learner.torch_threads=1 rollout.num_workers=1 rollout.env_threads=64

Prints a table and writes bench/results/pipeline-cpu-<commit>.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from learning_curves import first_reaching  # bench/ is on the path: this file runs as bench/pipeline.py
from rich.console import Console
from rich.table import Table

ROOT = pathlib.Path(__file__).resolve().parents[1]
SLOW = ["env=faulty", "env.kwargs.every=0", "env.kwargs.step_delay_s={delay}"]
CASES = {
    "default-k0": ["trainer.max_staleness=0"],
    "default-k1": ["trainer.max_staleness=1"],
    "default-k2": ["trainer.max_staleness=2"],
    "slow-k0": [*SLOW, "trainer.max_staleness=0"],
    "slow-k1": [*SLOW, "trainer.max_staleness=1"],
    "slow-k2": [*SLOW, "trainer.max_staleness=2"],
    "default-colocated": ["trainer.placement=colocated"],
}


def load_average() -> float:
    return os.getloadavg()[0]


def run(
    case: str, seed: int, iterations: int, model_path: str, out_dir: pathlib.Path, extra: list[str], step_delay: float
) -> dict:
    """One hgpo-train run; its summary from metrics.jsonl."""
    run_dir = out_dir / f"{case}-s{seed}"
    overrides = [o.format(delay=step_delay) for o in CASES[case]]
    cmd = [
        sys.executable, "-m", "hgpo.train", *overrides, *extra, f"trainer.seed={seed}",
        f"trainer.iterations={iterations}", f"model.path={model_path}", "tracking.wandb=disabled",
        "trainer.eval_every=0", "tracking.report=false",  # evaluation and the report are not what is measured
        "trainer.resume=never", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    for attempt in range(3):  # a local Ray can fail to start on a crowded machine: try again, then give up
        load = load_average()
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=7200)
        wall_s = time.perf_counter() - start
        if result.returncode == 0:
            break
        print(f"{case} seed {seed}, attempt {attempt + 1} failed:\n{result.stderr[-1500:]}", flush=True)
    else:
        raise RuntimeError(f"{case} seed {seed} failed 3 times:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return summarize_run(case, seed, lines) | {"wall_s": wall_s, "load_before": load}


HALF = 0.5
"""Time to learn: the first iteration whose success, averaged over it and the 2 before (learning_curves.SMOOTH),
reaches HALF."""


def summarize_run(case: str, seed: int, lines: list[dict]) -> dict:
    """One run's numbers from its metrics.jsonl lines (one per iteration, in order)."""
    steady = lines[1:]

    def mean(key: str) -> float:
        return statistics.fmean(m[key] for m in steady)

    success = [m["rollout/success_rate"] for m in lines]
    elapsed = list(itertools.accumulate(m["time/iteration_s"] for m in lines))
    reached = first_reaching(np.array(success), HALF)
    return {
        "case": case,
        "seed": seed,
        "iterations_per_s": len(steady) / sum(m["time/iteration_s"] for m in steady),
        "success_last3": statistics.fmean(success[-3:]),
        "iteration_to_half": reached,
        "seconds_to_half": None if reached is None else elapsed[reached],
        "staleness_mean": mean("sched/staleness_mean"),
        "learner_idle_share": mean("time/learner_idle_share"),
        "generator_idle_share": mean("time/generator_idle_share"),
        "rollout_s": mean("time/rollout_s"),
        "update_s": mean("time/update_s"),
        "success": success,
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and spread over seeds per case, with iterations/s relative to the same family's k = 0."""
    rows = []
    for case in dict.fromkeys(r["case"] for r in runs):
        mine = [r for r in runs if r["case"] == case]
        its = [r["iterations_per_s"] for r in mine]
        row = {
            "case": case,
            "seeds": [r["seed"] for r in mine],
            "iterations_per_s": statistics.fmean(its),
            "iterations_per_s_min": min(its),
            "iterations_per_s_max": max(its),
            "success_last3": statistics.fmean(r["success_last3"] for r in mine),
            "iteration_to_half": [r["iteration_to_half"] for r in mine],
            "seconds_to_half": [r["seconds_to_half"] for r in mine],
        }
        for key in ("staleness_mean", "learner_idle_share", "generator_idle_share", "rollout_s", "update_s"):
            row[key] = statistics.fmean(r[key] for r in mine)
        row["load_before"] = statistics.fmean(r["load_before"] for r in mine)
        rows.append(row)
    for row in rows:
        base = next((r for r in rows if r["case"] == row["case"].split("-")[0] + "-k0"), None)
        row["speedup_vs_k0"] = row["iterations_per_s"] / base["iterations_per_s"] if base else None
        row["success_vs_k0"] = row["success_last3"] - base["success_last3"] if base else None
    return rows


def per_seed(values: list, fmt: str) -> str:
    """One value per seed, '-' where the run never got there: '13 / - / 12'."""
    return " / ".join("-" if v is None else fmt.format(v) for v in values)


def print_table(rows: list[dict], iterations: int) -> None:
    table = Table(title=f"schedulers: {iterations} iterations, CPU, mean over seeds (load = 1-min load average)")
    columns = ("case", "its/s", "min-max", "x k=0", "success", "vs k=0", f"it to {HALF:.0%}", f"s to {HALF:.0%}",
               "staleness", "learner idle", "generator idle", "rollout s", "update s", "load")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        spread = f"{r['iterations_per_s_min']:.3f}-{r['iterations_per_s_max']:.3f}"
        table.add_row(
            r["case"], f"{r['iterations_per_s']:.3f}", spread,
            "-" if r["speedup_vs_k0"] is None else f"{r['speedup_vs_k0']:.2f}", f"{r['success_last3']:.1%}",
            "-" if r["success_vs_k0"] is None else f"{100 * r['success_vs_k0']:+.1f} pt",
            per_seed(r["iteration_to_half"], "{:d}"), per_seed(r["seconds_to_half"], "{:.0f}"),
            f"{r['staleness_mean']:.2f}",
            f"{r['learner_idle_share']:.0%}", f"{r['generator_idle_share']:.0%}", f"{r['rollout_s']:.2f}",
            f"{r['update_s']:.2f}", f"{r['load_before']:.1f}",
        )  # fmt: skip
    Console(width=240).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--extra", nargs="*", default=[], help="Hydra overrides added to every run")
    parser.add_argument("--step-delay", type=float, default=0.02, help="seconds each step of the slow-* cases takes")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from hgpo.train import validate_overrides
    from hgpo.warm_start import prepare_policy

    model_path = prepare_policy(validate_overrides([]))  # the default job's warm start (cached after the first run)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    out = ROOT / "bench" / "results" / f"pipeline-cpu-{commit.stdout.strip() or 'nocommit'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    result = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine, "iterations": args.iterations,
              "step_delay_s": args.step_delay}  # fmt: skip
    runs = []
    with tempfile.TemporaryDirectory(prefix="hgpo-pipeline-") as tmp:
        tmp_dir = pathlib.Path(tmp)
        for seed in args.seeds:
            for case in args.cases:
                runs.append(run(case, seed, args.iterations, model_path, tmp_dir, args.extra, args.step_delay))
                r = runs[-1]
                print(f"{case} seed {seed}: {r['iterations_per_s']:.3f} it/s, success {r['success_last3']:.1%}, "
                      f"load {r['load_before']:.1f}", flush=True)  # fmt: skip
                # written after every run, so an interrupted benchmark keeps what it measured
                out.write_text(json.dumps(result | {"extra": args.extra, "summary": summarize(runs), "runs": runs}))
    print_table(summarize(runs), args.iterations)
    out.write_text(json.dumps(result | {"extra": args.extra, "summary": summarize(runs), "runs": runs}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
