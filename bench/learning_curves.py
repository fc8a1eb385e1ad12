"""Learning curves: GRPO vs GiGPO vs HGPO (and HGPO's knobs) with the tiny model, seeded, same budget.

Each run is a real `hgpo-train` job (Ray actors, tiny model warm-started on the random solver), one
after another under `nice` (or --jobs N side by side), W&B disabled, one rollout worker, the learner and
the driver on one torch thread each (the shared 2-core machine thrashes with more; see COMMON). Runs land in
<runs-dir>/<env>/<variant>/s<seed>/. Resumable: a finished run (its metrics.jsonl holds every iteration)
is never run again and an unfinished one starts again from scratch; a run that fails before its first
iteration is retried (ATTEMPTS); the table, JSON and plot are rebuilt after every run. Seeds run in the
outer loop, so a partial grid still compares every estimator on the same seeds. All runs of an
environment start from one warm-started model (trainer.seed=0); a seed fixes the tasks of every
iteration and the sampling, so estimators compare paired, from the same starting policy.

    .venv/bin/python bench/learning_curves.py                 # the whole comparison: run what is missing, render
    .venv/bin/python bench/learning_curves.py --jobs 2        # two runs at a time (one core each)
    .venv/bin/python bench/learning_curves.py --plan          # list the runs still to do
    .venv/bin/python bench/learning_curves.py --render-only   # table + plot from the runs present
    .venv/bin/python bench/learning_curves.py --seeds 0 --variants grpo gigpo hgpo --iterations 2 \
        --runs-dir runs/evidence-smoke --docs-dir runs/evidence-smoke/docs    # smoke test, docs untouched

Renders the table and <docs-dir>/images/learning_curves.png into <docs-dir>/results.md and writes
bench/results/learning_curves-<runs-dir name>-<commit>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench")]

from report import git, pyplot, replace_section, uptime  # noqa: E402

RUNS = ROOT / "runs" / "evidence"
"""Default home of the runs: <runs>/<env>/<variant>/s<seed>/ (--runs-dir changes it, e.g. for a smoke test)."""
COMMON = [
    "tracking.wandb=disabled",
    "learner.torch_threads=1",
    "rollout.num_workers=1",
    # generous timeouts: actors take minutes to start on a loaded machine (nothing else changes)
    "trainer.sync_timeout_s=1200",
    "trainer.rollout_timeout_s=3600",
    "trainer.placement_timeout_s=1200",
]
"""Added to every run: no W&B, one learner thread and one rollout worker (fewer processes fighting for the two
shared cores; the 8 groups all go to that worker), and timeouts for a loaded machine."""
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""One torch thread in the driver (the warm start): spinning OpenMP threads crawl on a loaded 2-core machine."""
WIDE = ["model.tiny.hidden_size=128", "model.tiny.intermediate_size=256", "model.tiny.num_hidden_layers=4"]
"""A wider, deeper tiny model: the default one (2 layers, 64 wide) cannot read a colour from the current
observation (Crossroads' sign: 50% right even when imitating the solver); this one can (docs/results.md)."""
ENVS = {
    "keyroom": ["env=keyroom"],
    "crossroads": ["env=crossroads"],
    "crossroads-nosign": ["env=crossroads", "env.kwargs.signs=false"],
    "sokoban": ["env=sokoban"],
    "crossroads-wide": ["env=crossroads", *WIDE],
    "keyroom-1key-wide": ["env=keyroom", "env.kwargs.keys_per_room=1", *WIDE],
}
ESTIMATORS = {
    "grpo": ["algorithm=grpo"],
    "gigpo": ["algorithm=gigpo"],
    "hgpo": ["algorithm=hgpo"],
}
ABLATION = {
    "hgpo K=1": ["algorithm=hgpo", "env.history_length=1"],
    "hgpo K=4": ["algorithm=hgpo", "env.history_length=4"],
    "hgpo alpha=0": ["algorithm=hgpo", "algorithm.alpha=0"],
    "hgpo alpha=2": ["algorithm=hgpo", "algorithm.alpha=2"],
    "hgpo state_action": ["algorithm=hgpo", "algorithm.history_key=state_action"],
}
SMOOTH = 3
"""Iterations to a success level: the first iteration whose mean over the last SMOOTH iterations reaches it."""
FINAL = 3
"""Final success: the mean of the last FINAL iterations."""


def variants(names: list[str]) -> dict[str, list[str]]:
    table = {}
    for name in names:
        table.update(ABLATION if name == "ablation" else {name: ESTIMATORS.get(name) or ABLATION[name]})
    return table


def run_dir(runs: pathlib.Path, env: str, variant: str, seed: int) -> pathlib.Path:
    return runs / env / variant.replace(" ", "_").replace("=", "") / f"s{seed}"


def read_metrics(path: pathlib.Path) -> list[dict]:
    """The iterations of a run's metrics.jsonl in order (empty if there is none; a half-written last line is
    dropped, so a run killed mid-write reads as unfinished)."""
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        return []
    rows = []
    for line in metrics.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return sorted(rows, key=lambda r: r["iteration"])


def read_success(path: pathlib.Path) -> list[float]:
    """Success rate per iteration (rollout/success_rate) of a run."""
    return [r["rollout/success_rate"] for r in read_metrics(path)]


EVAL_KEY = "eval/success_rate"
"""Held-out evaluation success, logged on the iterations where trainer.eval_every evaluates (when the trainer has
evaluation); the table reports the last one of each run."""


def read_eval(path: pathlib.Path) -> float | None:
    """The run's last held-out evaluation success, or None when it logged none."""
    values = [r[EVAL_KEY] for r in read_metrics(path) if EVAL_KEY in r]
    return values[-1] if values else None


WARM_START_SEED = 0
"""Every run of an environment (and memory window) starts from the tiny model warm-started with this seed,
so seeds vary the RL sampling and the tasks, and estimators compare from the same starting policy."""
_WARM_START = (
    "import sys; from hgpo.train import validate_overrides; from hgpo.warm_start import prepare_policy; "
    "print(prepare_policy(validate_overrides(sys.argv[1:])))"
)


def warm_start_overrides(env: str, overrides: list[str]) -> list[str]:
    """What decides a run's warm start: the environment's overrides and the variant's env.* ones (memory window)."""
    return ENVS[env] + [o for o in overrides if o.startswith("env.")]


def warm_start(overrides: list[str]) -> str:
    """The cached warm-started model directory for these overrides with trainer.seed=WARM_START_SEED (built once)."""
    python = str(ROOT / ".venv" / "bin" / "python")
    command = ["nice", "-n", "5", python, "-c", _WARM_START, *overrides, f"trainer.seed={WARM_START_SEED}"]
    out = subprocess.run(command, cwd=ROOT, env=os.environ | THREADS, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


_PREFLIGHT = (
    "import json, sys; from hgpo.config import ConfigError; from hgpo.train import validate_overrides\n"
    "for overrides in json.loads(sys.argv[1]):\n"
    "    try:\n"
    "        validate_overrides(overrides)\n"
    "    except ConfigError as err:\n"
    "        sys.exit(f'{\" \".join(overrides)}: {err}')"
)


def preflight(plan: list[tuple[str, str, list[str], int]]) -> None:
    """Validate every distinct run config before the first run (a renamed key fails here, not 70 times)."""
    configs = sorted({tuple(ENVS[env] + overrides + COMMON) for env, _, overrides, _ in plan})
    python = str(ROOT / ".venv" / "bin" / "python")
    out = subprocess.run([python, "-c", _PREFLIGHT, json.dumps(configs)], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"learning_curves: a run's config does not validate, nothing ran:\n{out.stderr.strip()}")


RECORD = "bench_run.json"
"""The runner's record of a run (command, attempt, rc, wall time, load), beside the trainer's own run.json. Runs
from before it had its own name wrote it to run.json (read_record reads both)."""
ATTEMPTS = 3
"""A run that fails before its first iteration (a warm start or Ray start-up that fails on a loaded machine) is
started again, up to this many times in all; then the comparison moves on and a later invocation tries again."""


def run_one(
    runs: pathlib.Path, env: str, variant: str, overrides: list[str], seed: int, iterations: int, timeout_s: int
) -> bool:
    """One hgpo-train job, niced, its command, wall time and load saved next to it in RECORD.

    Returns False when the run was already finished (nothing ran). An unfinished run starts again from scratch.
    """
    out = run_dir(runs, env, variant, seed)
    if len(read_success(out)) >= iterations:
        return False
    for attempt in range(1, ATTEMPTS + 1):
        if out.exists():  # an interrupted or failed run starts again from scratch
            shutil.rmtree(out)
        out.mkdir(parents=True)
        record = {"attempt": attempt, "load_before": uptime()}
        print(f"[{time.strftime('%H:%M:%S')}] {env} / {variant} / seed {seed}: {record['load_before']}", flush=True)
        start = time.perf_counter()
        try:
            policy = warm_start(warm_start_overrides(env, overrides))
            record["warm_start_s"] = time.perf_counter() - start  # seconds on a cache hit; minutes when it builds
        except subprocess.CalledProcessError as err:
            record |= {"rc": f"warm start failed: {err.stderr.strip().splitlines()[-1:]}"}
        else:
            args = ENVS[env] + overrides + COMMON
            args += [f"model.path={policy}", f"trainer.seed={seed}", f"trainer.iterations={iterations}"]
            command = ["nice", "-n", "5", str(ROOT / ".venv" / "bin" / "hgpo-train"), *args, f"hydra.run.dir={out}"]
            record["command"] = "OMP_NUM_THREADS=1 " + " ".join(command)
            with open(out / "stdout.log", "w") as log:
                try:
                    result = subprocess.run(
                        command, cwd=ROOT, env=os.environ | THREADS, stdout=log, stderr=subprocess.STDOUT,
                        timeout=timeout_s,
                    )  # fmt: skip
                    record["rc"] = result.returncode
                except subprocess.TimeoutExpired:
                    record["rc"] = "timeout"
        record |= {"wall_s": time.perf_counter() - start, "load_after": uptime()}
        (out / RECORD).write_text(json.dumps(record, indent=1))
        done = len(read_success(out))
        print(f"    rc={record['rc']}, {record['wall_s']:.0f} s, {done} iterations", flush=True)
        if record["rc"] == 0 or done > 0:
            break
    return True


def first_reaching(curve: np.ndarray, level: float) -> int | None:
    """First iteration whose trailing SMOOTH-iteration mean is >= level (None if never)."""
    smooth = np.convolve(curve, np.ones(SMOOTH) / SMOOTH, mode="valid")
    hits = np.flatnonzero(smooth >= level)
    return int(hits[0]) + SMOOTH - 1 if hits.size else None


def summarize(curves: dict[int, list[float]], iterations: int, evals: dict[int, float | None] | None = None) -> dict:
    """Per-iteration mean/sd/min/max over seeds, iterations to 50% / 90%, final and mean success, and the last
    held-out evaluation success of each seed (None where the run logged none)."""
    seeds = sorted(s for s, c in curves.items() if len(c) >= iterations)
    if not seeds:
        return {"seeds": []}
    stack = np.array([curves[s][:iterations] for s in seeds])
    final = stack[:, -FINAL:].mean(axis=1)
    mean_success = stack.mean(axis=1)
    return {
        "seeds": seeds,
        "mean": stack.mean(axis=0).tolist(),
        "sd": stack.std(axis=0, ddof=1).tolist() if len(seeds) > 1 else [0.0] * iterations,
        "min": stack.min(axis=0).tolist(),
        "max": stack.max(axis=0).tolist(),
        "to50": [first_reaching(c, 0.5) for c in stack],
        "to90": [first_reaching(c, 0.9) for c in stack],
        "final": final.tolist(),
        "mean_success": mean_success.tolist(),
        "eval": [(evals or {}).get(s) for s in seeds],
    }


def paired_difference(a: dict, b: dict) -> tuple[float, float, int] | None:
    """Mean over common seeds of a's minus b's mean success, its 95% t half-width, and the seed count."""
    common = sorted(set(a.get("seeds", [])) & set(b.get("seeds", [])))
    if len(common) < 2:
        return None
    diff = np.array([a["mean_success"][a["seeds"].index(s)] - b["mean_success"][b["seeds"].index(s)] for s in common])
    t95 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57, 7: 2.45, 8: 2.36, 9: 2.31, 10: 2.26}.get(len(common), 2.0)
    return float(diff.mean()), float(t95 * diff.std(ddof=1) / np.sqrt(len(common))), len(common)


def fmt_iters(values: list[int | None], iterations: int) -> str:
    """Median iteration over seeds (the upper one for an even count; a seed that never got there counts as
    past the budget) and how many seeds got there."""
    reached = [v for v in values if v is not None]
    if not reached:
        return f"never (0/{len(values)})"
    median = sorted(v if v is not None else iterations for v in values)[len(values) // 2]
    return f"{'>' + str(iterations - 1) if median >= iterations else median} ({len(reached)}/{len(values)})"


def mean_sd(values: list[float]) -> str:
    """'mean ± sd' over seeds (sd 0 for one seed)."""
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.2f}"


def markdown(summary: dict, iterations: dict[str, int]) -> str:
    """One row per (env, variant) with finished seeds; ± is the sd over seeds."""
    lines = [
        "| env | variant | seeds | success, first iteration | mean success (all iterations) | final success (last 3) "
        "| held-out eval success (last) | iterations to 50% | iterations to 90% "
        "| mean success minus HGPO's, same seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for env, by_variant in summary.items():
        for variant, s in by_variant.items():
            if not s.get("seeds"):
                continue
            n = iterations[env]
            evals = [e for e in s.get("eval", []) if e is not None]
            eval_text = f"{mean_sd(evals)} ({len(evals)} seeds)" if evals else "-"
            diff = paired_difference(s, by_variant.get("hgpo", {})) if variant != "hgpo" else None
            diff_text = f"{diff[0]:+.3f} ± {diff[1]:.3f} ({diff[2]} seeds)" if diff else "-"
            lines.append(
                f"| {env} | {variant} | {len(s['seeds'])} | {s['mean'][0]:.2f} | {mean_sd(s['mean_success'])} "
                f"| {mean_sd(s['final'])} | {eval_text} | {fmt_iters(s['to50'], n)} "
                f"| {fmt_iters(s['to90'], n)} | {diff_text} |"
            )
    return "\n".join(lines)


DYNAMICS = {"loss/entropy": "policy entropy", "adv/zero_share": "share of rows with advantage 0"}
"""Per-run learner metrics behind a curve's shape: a policy that turns deterministic before it has learned gives
groups of identical episodes, whose advantages are all 0, so nothing moves it any more."""


def dynamics_table(runs: pathlib.Path, envs: list[str], names: list[str], seeds: list[int], iterations: dict) -> str:
    """Per run: iterations to 90%, the first held-out evaluation at >= 90%, and each DYNAMICS metric at
    iterations 20-39 (the plateau, where there is one) and over the last FINAL iterations."""
    head = ["iterations to 90%", "held-out eval >= 90% first after iteration"]
    head += [f"{label}, {when}" for label in DYNAMICS.values() for when in ("iterations 20-39", "last 3")]
    lines = [f"| env | variant | seed | {' | '.join(head)} |", "|---" * (3 + len(head)) + "|"]
    for env in envs:
        for variant in variants(names):
            for seed in seeds:
                rows = read_metrics(run_dir(runs, env, variant, seed))[: iterations[env]]
                if len(rows) < iterations[env] or not all(key in rows[0] for key in DYNAMICS):
                    continue  # unfinished, or without the learner's metrics
                to90 = first_reaching(np.array([r["rollout/success_rate"] for r in rows]), 0.9)
                evals = [r["iteration"] for r in rows if r.get(EVAL_KEY, 0) >= 0.9]
                cells = ["-" if to90 is None else str(to90), str(evals[0]) if evals else "-"]
                for key in DYNAMICS:
                    series = [r[key] for r in rows]
                    cells.append(f"{np.mean(series[20:40]):.2f} | {np.mean(series[-FINAL:]):.2f}")
                lines.append(f"| {env} | {variant} | {seed} | {' | '.join(cells)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def plot(summary: dict, path: pathlib.Path) -> None:
    """Mean success per iteration with the min-max band over seeds, one panel per environment (+ ablation)."""
    plt = pyplot()
    panels = []
    for env, by_variant in summary.items():
        main = {v: s for v, s in by_variant.items() if v in ESTIMATORS and s.get("seeds")}
        knobs = {v: s for v, s in by_variant.items() if (v not in ESTIMATORS or v == "hgpo") and s.get("seeds")}
        if main:
            panels.append((env, main))
        if len(knobs) > 1:
            panels.append((f"{env}: HGPO knobs", knobs))
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (title, by_variant) in zip(axes[0], panels):
        for variant, s in by_variant.items():
            x = np.arange(len(s["mean"]))
            ax.plot(x, s["mean"], label=f"{variant} ({len(s['seeds'])})")
            ax.fill_between(x, s["min"], s["max"], alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("success rate (mean over seeds; band: min-max)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def collect(runs: pathlib.Path, envs: list[str], names: list[str], seeds: list[int]) -> tuple[dict, dict]:
    """Success curves and last held-out eval success of every (env, variant, seed) present on disk."""
    curves: dict = {}
    evals: dict = {}
    for env in envs:
        for variant in variants(names):
            paths = {s: run_dir(runs, env, variant, s) for s in seeds}
            curves.setdefault(env, {})[variant] = {s: read_success(path) for s, path in paths.items()}
            evals.setdefault(env, {})[variant] = {s: read_eval(path) for s, path in paths.items()}
    return curves, evals


def run_records(runs: pathlib.Path, envs: list[str], names: list[str], seeds: list[int]) -> list[dict]:
    out = []
    for env in envs:
        for variant in variants(names):
            for seed in seeds:
                record = read_record(run_dir(runs, env, variant, seed))
                if record:
                    out.append({"env": env, "variant": variant, "seed": seed} | record)
    return out


def read_record(path: pathlib.Path) -> dict | None:
    """The runner's record of the run in `path`: RECORD, or an older run's run.json when it is the runner's (it
    has wall_s; the trainer's run.json has not)."""
    for name in (RECORD, "run.json"):
        if (path / name).is_file():
            record = json.loads((path / name).read_text())
            if "wall_s" in record:
                return record
    return None


def planned_runs(args: argparse.Namespace) -> list[tuple[str, str, list[str], int]]:
    """(env, variant, overrides, seed) of the whole comparison, seeds in the outer loop."""
    plan = []
    for seed in args.seeds:
        for env in args.envs:
            names = [v for v in args.variants if v in ESTIMATORS or env in args.ablation_envs]
            plan += [(env, variant, overrides, seed) for variant, overrides in variants(names).items()]
    return plan


def parse_iterations(items: list[str], envs: list[str]) -> dict[str, int]:
    """`30` (every environment) and/or `env=N` items -> iterations per environment."""
    iterations = {env: ITERATIONS.get(env, DEFAULT_ITERATIONS) for env in envs}
    for item in items:
        env, _, value = item.rpartition("=")
        if env and env not in ENVS:
            raise SystemExit(f"--iterations {item}: unknown environment {env!r}; choose from {list(ENVS)}")
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"--iterations {item}: give a positive number of iterations, e.g. 30 or keyroom=30")
        iterations.update({env: int(value)} if env else dict.fromkeys(envs, int(value)))
    return iterations


DEFAULT_ITERATIONS = 30
"""The default job's budget (conf/config.yaml trainer.iterations), the same for every estimator."""
ITERATIONS = {"crossroads-nosign": 80}
"""Longer budgets: on Crossroads without signs the tiny model sits at the memoryless 50% for 30-40 iterations
before the hall's history is learned (if it is), so 30 would stop on the plateau."""
COMPARISON = ["keyroom", "crossroads-nosign", "sokoban"]
"""The environments of the comparison in docs/results.md (the others in ENVS are there for probes: the tiny model
does not learn crossroads with signs, and the wide model is too slow for 5 seeds here)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=COMPARISON, choices=list(ENVS))
    parser.add_argument(
        "--variants", nargs="+", default=[*ESTIMATORS, "ablation"], choices=[*ESTIMATORS, "ablation", *ABLATION],
        help="estimators, 'ablation' (all of HGPO's knobs) or single knobs, e.g. 'hgpo K=1'",
    )  # fmt: skip
    parser.add_argument(
        "--ablation-envs", nargs="+", default=["crossroads-nosign"], help="environments that get the ablation"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--iterations",
        nargs="+",
        default=[],
        help=f"N for every env and/or env=N (default {DEFAULT_ITERATIONS}; {ITERATIONS})",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs side by side (each uses about one core: 2 on this 2-core machine)"
    )
    parser.add_argument("--timeout-s", type=int, default=3 * 3600, help="per run")
    parser.add_argument("--runs-dir", type=pathlib.Path, default=RUNS, help="where the runs go (default runs/evidence)")
    parser.add_argument("--docs-dir", type=pathlib.Path, default=ROOT / "docs", help="results.md and images/ go here")
    parser.add_argument("--render-only", action="store_true", help="render the runs present; run nothing")
    parser.add_argument("--plan", action="store_true", help="list the runs still to do; run nothing")
    args = parser.parse_args()
    args.runs_dir = args.runs_dir.resolve()  # hgpo-train runs in the repository root
    iterations = parse_iterations(args.iterations, args.envs)
    plan = planned_runs(args)
    todo = [p for p in plan if len(read_success(run_dir(args.runs_dir, p[0], p[1], p[3]))) < iterations[p[0]]]
    print(f"{len(plan)} runs planned, {len(todo)} still to do ({iterations} iterations)", flush=True)
    if args.plan:
        print("\n".join(f"  {env} / {variant} / seed {seed}" for env, variant, _, seed in todo))
        return
    start = time.perf_counter()
    if not args.render_only and todo:
        preflight(todo)
        if args.jobs > 1:  # build each warm start once, before runs that share it start side by side
            for shared in sorted({tuple(warm_start_overrides(env, overrides)) for env, _, overrides, _ in todo}):
                warm_start(list(shared))
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = [
                pool.submit(run_one, args.runs_dir, env, variant, overrides, seed, iterations[env], args.timeout_s)
                for env, variant, overrides, seed in todo
            ]
            for ran in as_completed(runs):
                if ran.result():
                    render(args, iterations, time.perf_counter() - start, quiet=True)  # results after every run
    render(args, iterations, time.perf_counter() - start)


def render(args: argparse.Namespace, iterations: dict[str, int], wall_s: float, quiet: bool = False) -> None:
    """Table, JSON, plot and the docs section from the runs on disk."""
    curves, evals = collect(args.runs_dir, args.envs, args.variants, args.seeds)
    summary = {
        env: {v: summarize(c, iterations[env], evals[env][v]) for v, c in by_variant.items()}
        for env, by_variant in curves.items()
    }
    records = run_records(args.runs_dir, args.envs, args.variants, args.seeds)
    table = markdown(summary, iterations)
    dynamics = dynamics_table(args.runs_dir, args.envs, args.variants, args.seeds, iterations)
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    out = ROOT / "bench" / "results" / f"learning_curves-{args.runs_dir.name}-{commit}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"commit": commit, "argv": sys.argv[1:], "load_now": uptime(), "wall_s": wall_s, "cpus": os.cpu_count()}
    out.write_text(json.dumps({"meta": meta, "iterations": iterations, "summary": summary, "runs": records}, indent=1))
    plot(summary, args.docs_dir / "images" / "learning_curves.png")
    walls = [r["wall_s"] - r.get("warm_start_s", 0.0) for r in records if r.get("rc") == 0]
    finished = sum(
        len(curve) >= iterations[env] for env, by_variant in curves.items() for c in by_variant.values()
        for curve in c.values()
    )  # fmt: skip
    try:
        where = args.runs_dir.resolve().relative_to(ROOT)
    except ValueError:
        where = args.runs_dir
    lines = [
        f"Rendered by `bench/learning_curves.py {' '.join(sys.argv[1:])}` at commit {commit} from {finished} "
        f"finished runs in {where}/ (wall time of the {len(walls)} with the runner's record, warm start excluded: "
        f"median {np.median(walls) if walls else 0:.0f} s, "
        f"range {min(walls, default=0):.0f}-{max(walls, default=0):.0f} s; "
        f"load at render: {meta['load_now']}). ± is the standard deviation over seeds; the plot's band is the "
        "min-max over seeds.",
        "",
        table,
        "",
        "![learning curves](images/learning_curves.png)",
    ]
    if dynamics:
        legend = ", ".join(f"{label} (`{key}`)" for key, label in DYNAMICS.items())
        lines += ["", f"Per run: {legend}.", "", dynamics]
    replace_section(args.docs_dir / "results.md", "learning-curves-table", "\n".join(lines))
    if not quiet:
        print(table)
        print(f"wrote {out}, {args.docs_dir / 'results.md'} and {args.docs_dir / 'images' / 'learning_curves.png'}")


if __name__ == "__main__":
    main()
