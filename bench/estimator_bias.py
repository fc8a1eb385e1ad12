"""How close each advantage estimator comes to the true step advantage, on KeyRoom and Crossroads.

A fixed scripted policy (bench/bias_truth.py: solver-or-random with history-dependent skill and 5%
invalid answers) plays independent batches of one group of 8 episodes per task seed (the same 8
tasks every batch, so every (history, action) cell recurs). Each sampled step's true advantage
A(h, a) = Q(h, a) - V(h) is computed exactly from its whole history (bias_truth.py defines it), and
every estimator runs on the same batches through hgpo.advantages' public functions.

Scales. The estimators divide by bucket stds by default, so their numbers are not in reward units.
Two views: (1) normalize=none, in reward units: bias (mean error), squared bias of the cells
(E[estimate | cell] - A, weighted by the cell's rows), variance within cells and MSE = bias^2 +
variance; (2) normalize=std, as trained: Pearson correlation with A and sign agreement (the share
of rows with A != 0 whose estimate has A's sign; an estimate of exactly 0 disagrees). 95% intervals
come from a bootstrap over batches.

    .venv/bin/python bench/estimator_bias.py                 # 200 batches per environment and policy
    .venv/bin/python bench/estimator_bias.py --batches 20    # quick look
    .venv/bin/python bench/estimator_bias.py --write-docs    # also render the table and plot into docs/results.md

Prints the table, writes bench/results/estimator_bias-<commit>.json (every estimator of the grid, both
normalisations, all rows and value-mixed rows) and bench/results/estimator_bias.png; --write-docs
writes the plot to docs/images/ instead, bench/baselines/estimator_bias.json (the JSON rounded; committed)
and the tables in docs/results.md.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bias_truth import ScriptedPolicy, Task, exact_tree, sample_batches  # noqa: E402
from report import git, pyplot, replace_section, uptime  # noqa: E402

from envs.crossroads import CrossroadsEnv  # noqa: E402
from envs.keyroom import KeyRoomEnv  # noqa: E402
from hgpo.advantages import discounted_returns, gigpo_advantages, grpo_advantages, hgpo_advantages  # noqa: E402

ENVS = {
    "keyroom": Task(lambda: KeyRoomEnv(num_rooms=3), max_steps=10),
    "crossroads": Task(lambda: CrossroadsEnv(trail_length=2), max_steps=10),
    "crossroads-nosign": Task(lambda: CrossroadsEnv(trail_length=2, signs=False), max_steps=10),
}
POLICIES = {
    "momentum": ScriptedPolicy(skill=0.5, momentum=0.6),
    "memoryless": ScriptedPolicy(skill=0.5, momentum=0.0),
    "skilled": ScriptedPolicy(skill=0.8, momentum=0.4),
}
"""momentum: history-dependent skill, q in [0.2, 0.8]; memoryless: q = 0.5 whatever the history; skilled: q in
[0.6, 1.0], a policy late in training. All answer invalidly 5% of the time."""
MIXED_SPREAD = 1.0
"""A row is in a value-mixed bucket when its (group, state) bucket holds histories whose V differ by more than this."""
HGPO_DEFAULT = {"K": 2, "alpha": 1.0, "offset": 1, "key": "state", "episode": False}
GRID = {
    "K": (0, 1, 2, 4),
    "alpha": (0.0, 1.0, 2.0),
    "offset": (0, 1),
    "key": ("state", "state_action"),
    "episode": (False, True),
}
TABLE_VARIANTS = [
    {},
    {"K": 0},
    {"K": 1},
    {"K": 4},
    {"alpha": 0.0},
    {"alpha": 2.0},
    {"offset": 0},
    {"key": "state_action"},
    {"episode": True},
    {"K": 4, "key": "state_action"},
]


def hgpo_label(v: dict) -> str:
    return (
        f"hgpo K={v['K']} a={v['alpha']:g} off={v['offset']} {'s+a' if v['key'] == 'state_action' else 's'}"
        f"{' +ep' if v['episode'] else ''}"
    )


def estimators(data: dict[str, np.ndarray], normalize: str) -> dict[str, np.ndarray]:
    """Every estimator's advantages on the same rows: GRPO, GiGPO, the HGPO grid and two oracles."""
    g, tr, st = data["group_ids"], data["traj_ids"], data["step_ids"]
    returns, scores = data["returns"], data["scores"]
    out = {
        "grpo": grpo_advantages(g, tr, scores, normalize=normalize),
        "gigpo": gigpo_advantages(g, tr, st, data["state_keys"], returns, scores, normalize=normalize),
        # Oracles: one level, keyed by the whole history (the truth's own context) or by the prompt's
        # retained window with actions (spec/hgpo.md's "Oracle").
        "oracle: history": hgpo_advantages(g, tr, st, data["history_keys"], returns, 0, normalize=normalize),
        "oracle: window": hgpo_advantages(g, tr, st, data["window_keys"], returns, 0, normalize=normalize),
    }
    for values in itertools.product(*GRID.values()):
        v = dict(zip(GRID, values))
        if v["K"] == 0 and (v["key"] == "state_action" or v["alpha"] != 1.0):
            continue  # one level: the key and alpha change nothing
        out[hgpo_label(v)] = hgpo_advantages(
            g,
            tr,
            st,
            data["state_keys"],
            returns,
            history_length=v["K"],
            alpha=v["alpha"],
            weight_offset=v["offset"],
            normalize=normalize,
            action_keys=data["action_keys"] if v["key"] == "state_action" else None,
            episode_scores=scores if v["episode"] else None,
        )
    return out


def prepare(task: Task, policy: ScriptedPolicy, seeds: list[int], batches: int, group_size: int, rng_seed: int):
    """Sample the batches and add the spec's returns and GRPO scores."""
    trees = {seed: exact_tree(task, seed, policy) for seed in seeds}
    data = sample_batches(task, seeds, policy, trees, batches, group_size, rng_seed)
    data["returns"] = discounted_returns(
        data["traj_ids"], data["step_ids"], data["rewards"], task.gamma, data["invalid"], task.invalid_penalty
    )
    _, traj_index = np.unique(data["traj_ids"], return_inverse=True)
    data["scores"] = (
        np.bincount(traj_index, weights=data["rewards"])[traj_index] - task.invalid_penalty * data["invalid"]
    )
    data["mixed"] = value_mixed_rows(data, MIXED_SPREAD)
    return data, sum(len(t) for t in trees.values())


def value_mixed_rows(data: dict[str, np.ndarray], spread: float) -> np.ndarray:
    """bool[N]: the row's (group, state) bucket holds histories whose true values V(h) differ by more than `spread`."""
    _, bucket = np.unique(
        np.stack([data["group_ids"].astype(np.uint64), data["state_keys"]]), axis=1, return_inverse=True
    )
    v = data["true_v"]
    high = np.full(bucket.max() + 1, -np.inf)
    low = np.full(bucket.max() + 1, np.inf)
    np.maximum.at(high, bucket, v)
    np.minimum.at(low, bucket, v)
    return (high - low)[bucket] > spread


def unit_bias2(error: np.ndarray, unit: np.ndarray, batch: np.ndarray, weights: np.ndarray) -> tuple:
    """Squared conditional bias and variance of `error` over units (cells or histories), per weighting.

    weights: [W, n_batches] multiplicities of each batch (row 0 = all ones for the point estimate; the
    others are bootstrap draws). Per unit u with n_u rows: mean error e_u and ddof-1 variance s_u^2;
    e_u^2 - s_u^2 / n_u is unbiased for E[error | u]^2. Both are averaged over the rows of units with at
    least two rows. Returns two float arrays [W].
    """
    n_batches, n_units = weights.shape[1], int(unit.max()) + 1
    index = batch * n_units + unit

    def per_batch(values):
        return np.bincount(index, weights=values, minlength=n_batches * n_units).reshape(n_batches, n_units)

    n = weights @ per_batch(np.ones_like(error))
    s1, s2 = weights @ per_batch(error), weights @ per_batch(error**2)
    several = n > 1.5
    safe = np.where(several, n, 2.0)
    mean = s1 / safe
    var = np.where(several, (s2 - s1 * mean) / (safe - 1), 0.0)
    rows = np.where(several, n, 0.0).sum(axis=1)
    bias2 = (np.where(several, n * (mean**2 - var / safe), 0.0)).sum(axis=1) / rows
    return bias2, (np.where(several, n * var, 0.0)).sum(axis=1) / rows


def metrics(estimate, truth, cell, history, batch, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Bias terms, variance, MSE, correlation, sign agreement and zero share, one value per weighting [W].

    Cells are (task, history, action), where the truth is fixed: bias2 is the mean squared conditional
    bias E[estimate - A | cell]^2 and variance the mean within-cell variance (unit_bias2).
    baseline_bias2 does the same per history: the row-average error at a history estimates
    sum_a pi(a|h) (E[estimate | h, a] - A(h, a)), the offset that a wrong baseline adds to every action there.
    sign: share of rows with A != 0 and estimate != 0 whose signs agree; zero: share of estimates exactly 0.
    """
    error = estimate - truth
    bias2, variance = unit_bias2(error, cell, batch, weights)
    baseline_bias2, _ = unit_bias2(error, history, batch, weights)
    signed = (truth != 0) & (estimate != 0)
    columns = [
        np.ones_like(error),
        error,
        error**2,
        estimate,
        estimate**2,
        truth,
        truth**2,
        estimate * truth,
        signed,
        signed & (np.sign(estimate) == np.sign(truth)),
        estimate == 0,
    ]
    sums = weights @ np.stack([np.bincount(batch, weights=c, minlength=weights.shape[1]) for c in columns], axis=1)
    n, e, e2, x, x2, t, t2, xt, sig, agree, zero = (sums[:, i] for i in range(len(columns)))
    cov = xt / n - (x / n) * (t / n)
    denom = np.sqrt(np.maximum(x2 / n - (x / n) ** 2, 0) * np.maximum(t2 / n - (t / n) ** 2, 0))
    return {
        "bias": e / n,
        "baseline_bias2": baseline_bias2,
        "bias2": bias2,
        "variance": variance,
        "mse": e2 / n,
        "corr": np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0),
        "sign": agree / np.maximum(sig, 1e-300),
        "zero": zero / n,
    }


def evaluate(data, estimates: dict[str, np.ndarray], rows: np.ndarray, boot: int, rng_seed: int) -> dict[str, dict]:
    """Point estimates and 95% bootstrap intervals (batches resampled) of every metric, on the rows selected."""
    _, batch = np.unique(data["batch"][rows], return_inverse=True)
    n_batches = int(batch.max()) + 1
    _, cell = np.unique(data["cell_keys"][rows], return_inverse=True)
    _, history = np.unique(data["history_keys"][rows], return_inverse=True)
    truth = data["true_advantage"][rows]
    rng = np.random.default_rng(rng_seed)
    draws = [np.bincount(rng.integers(0, n_batches, n_batches), minlength=n_batches) for _ in range(boot)]
    weights = np.array([np.ones(n_batches)] + draws, dtype=float)
    out = {}
    for name, estimate in estimates.items():
        values = metrics(estimate[rows], truth, cell, history, batch, weights)
        out[name] = {
            k: {
                "value": float(v[0]),
                "ci95": [float(np.percentile(v[1:], q)) for q in (2.5, 97.5)] if boot else None,
            }
            for k, v in values.items()
        }
    return out


def table_names() -> list[str]:
    """The estimators shown in the table: baselines, the HGPO default, one knob changed at a time, oracles."""
    names = ["grpo", "gigpo"] + [hgpo_label({**HGPO_DEFAULT, **change}) for change in TABLE_VARIANTS]
    return names + ["oracle: window", "oracle: history"]


def study(env: str, policy_name: str, args: argparse.Namespace) -> dict:
    """One environment under one policy: sample, estimate (both normalisations), evaluate."""
    start = time.perf_counter()
    seeds = list(range(args.tasks))
    data, nodes = prepare(ENVS[env], POLICIES[policy_name], seeds, args.batches, args.group_size, args.seed)
    shown = table_names()
    all_rows = np.arange(len(data["batch"]))
    mixed = np.flatnonzero(data["mixed"])
    result = {"rows": len(all_rows), "mixed_rows": len(mixed), "history_nodes": nodes, "normalize": {}}
    for normalize in ("none", "std"):
        estimates = estimators(data, normalize)
        per_subset = {}
        for subset, rows in (("all", all_rows), ("mixed", mixed)):
            boot = {k: v for k, v in estimates.items() if k in shown or getattr(args, "boot_all", False)}
            rest = {k: v for k, v in estimates.items() if k not in boot}
            per_subset[subset] = evaluate(data, boot, rows, args.boot, args.seed) | evaluate(
                data, rest, rows, 0, args.seed
            )
        result["normalize"][normalize] = per_subset
    truth = data["true_advantage"]
    result["truth"] = {
        "mean_abs": float(np.abs(truth).mean()),
        "std": float(truth.std()),
        "success": float(data["rewards"].sum() / len(np.unique(data["traj_ids"])) / 10.0),
    }
    result["seconds"] = time.perf_counter() - start
    return result


def cell(metric: dict, digits: int = 2) -> str:
    if not metric["ci95"]:
        return f"{metric['value']:.{digits}f}"
    lo, hi = metric["ci95"]
    return f"{metric['value']:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"


def markdown_table(result: dict) -> str:
    """One environment and policy: a row per table estimator (value ± half the 95% interval)."""
    lines = [
        "| estimator | bias | baseline bias² | baseline bias², mixed | bias² | variance | MSE | corr (none) "
        "| corr (std) | sign (std) | zero share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    none, std = result["normalize"]["none"], result["normalize"]["std"]
    for name in table_names():
        a, m, s = none["all"][name], none["mixed"][name], std["all"][name]
        lines.append(
            f"| {name} | {cell(a['bias'])} | {cell(a['baseline_bias2'])} | {cell(m['baseline_bias2'])} "
            f"| {cell(a['bias2'])} | {cell(a['variance'])} | {cell(a['mse'])} | {cell(a['corr'])} | {cell(s['corr'])} "
            f"| {cell(s['sign'])} | {cell(s['zero'])} |"
        )
    return "\n".join(lines)


def plot(results: dict, path: pathlib.Path) -> None:
    """Per environment: baseline bias^2 (normalize=none, first policy) and correlation with A (std, every policy)."""
    plt = pyplot()
    names = table_names()
    fig, axes = plt.subplots(len(results), 2, figsize=(13, 0.6 + 0.3 * len(names) * len(results)), squeeze=False)
    for row, (env, by_policy) in enumerate(results.items()):
        first = next(iter(by_policy))
        ax = axes[row][0]
        values = [by_policy[first]["normalize"]["none"]["all"][n]["baseline_bias2"] for n in names]
        _bars(ax, values, 0, 0.8, None)
        limit = 1.6 * max(v["value"] for n, v in zip(names, values) if n != "gigpo")
        ax.set_xlim(right=limit)
        for i, v in enumerate(values):
            if v["value"] > limit:  # GiGPO adds two advantages: twice the scale in reward units
                ax.text(limit * 0.98, i, f"{v['value']:.1f} →", ha="right", va="center", fontsize=7, color="white")
        ax.set_title(f"{env}: baseline bias² (normalize=none, {first} policy; lower is better)", fontsize=9)
        ax = axes[row][1]
        height = 0.8 / len(by_policy)
        for i, (policy, result) in enumerate(by_policy.items()):
            values = [result["normalize"]["std"]["all"][n]["corr"] for n in names]
            _bars(ax, values, (i - (len(by_policy) - 1) / 2) * height, height, policy)
        ax.set_title(f"{env}: correlation with the true advantage (normalize=std; higher is better)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        for ax in axes[row]:
            ax.set_yticks(range(len(names)), names, fontsize=7)
            ax.invert_yaxis()
            ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Estimators against the exact step advantage (95% bootstrap intervals over batches)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bars(ax, values: list[dict], offset: float, height: float, label: str | None) -> None:
    centre = np.array([v["value"] for v in values])
    # a percentile interval need not contain the point estimate of a bias-corrected statistic
    low = np.maximum(centre - np.array([v["ci95"][0] for v in values]), 0.0)
    high = np.maximum(np.array([v["ci95"][1] for v in values]) - centre, 0.0)
    ax.barh(np.arange(len(values)) + offset, centre, height=height, xerr=[low, high], capsize=1.5, label=label)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--batches", type=int, default=200, help="independent batches (iterations) per study")
    parser.add_argument("--tasks", type=int, default=8, help="task seeds = groups per batch")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--boot", type=int, default=200, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--boot-all", action="store_true", help="intervals for the whole grid, not only the tables")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help="render into docs/results.md and docs/images/")
    parser.add_argument("--from-json", type=pathlib.Path, help="render the tables and plot of an earlier run's JSON")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        meta, results = saved["meta"], saved["results"]
    else:
        meta, results = run_studies(args)
    if meta["args"]["boot"]:  # the docs' plot only with --write-docs; a quick look leaves it alone
        image = ROOT / "docs" / "images" if args.write_docs else ROOT / "bench" / "results"
        plot(results, image / "estimator_bias.png")
    if args.write_docs:
        write_baseline(meta, results, ROOT / "bench" / "baselines" / "estimator_bias.json")
        replace_section(ROOT / "docs" / "results.md", "estimator-bias-tables", render_docs(results, meta))


def run_studies(args: argparse.Namespace) -> tuple[dict, dict]:
    """Every (environment, policy) study; prints the tables and writes the JSON. Returns (meta, results)."""
    load_before = uptime()
    start = time.perf_counter()
    results: dict[str, dict] = {}
    for env in args.envs:
        for policy_name in args.policies:
            results.setdefault(env, {})[policy_name] = result = study(env, policy_name, args)
            print(
                f"\n## {env}, {policy_name} policy: {result['rows']} rows, {result['mixed_rows']} in value-mixed "
                f"buckets, success {result['truth']['success']:.2f}, {result['seconds']:.0f} s\n"
            )
            print(markdown_table(result))
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    meta = {
        "command": "bench/estimator_bias.py " + " ".join(sys.argv[1:]),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_before": load_before,
        "load_after": uptime(),
        "wall_s": time.perf_counter() - start,
        "args": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()},
        "policies": {k: vars(v) | {"class": "ScriptedPolicy"} for k, v in POLICIES.items()},
    }
    out = ROOT / "bench" / "results" / f"estimator_bias-{commit}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=float))
    print(f"\nwrote {out} ({meta['wall_s']:.0f} s, {meta['load_after']})")
    return meta, results


def write_baseline(meta: dict, results: dict, path: pathlib.Path) -> None:
    """The committed reference of the docs' numbers: every estimator of the grid, 4 significant digits, compact."""

    def rounded(x):
        if isinstance(x, float):
            return float(f"{x:.4g}")
        if isinstance(x, dict):
            return {k: rounded(v) for k, v in x.items()}
        return [rounded(v) for v in x] if isinstance(x, list) else x

    path.write_text(json.dumps(rounded({"meta": meta, "results": results}), separators=(",", ":")) + "\n")


def render_docs(results: dict, meta: dict) -> str:
    parts = [
        f"Generated by `{meta['command']}` at commit {meta['commit']} ({meta['machine']}; {meta['load_before']} "
        f"before, {meta['load_after']} after; {meta['wall_s']:.0f} s).",
    ]
    for env, by_policy in results.items():
        for policy_name, result in by_policy.items():
            parts.append(
                f"\n**{env}, {policy_name} policy** ({result['rows']:,} rows, {result['mixed_rows']:,} of them in "
                f"value-mixed buckets; success {result['truth']['success']:.0%}; "
                f"mean |A| {result['truth']['mean_abs']:.2f})\n"
            )
            parts.append(markdown_table(result))
    return "\n".join(parts)


if __name__ == "__main__":
    main()
