"""Benchmark the rollout: environment steps/s and generated tokens/s on the default job's environment and policy.

Cases (the default job's 8 groups x 8 episodes of KeyRoom, its warm-started tiny policy, hf engine):
- batched, 1 worker in this process: every unfinished episode in one `generate` call per turn;
- one-by-one, 1 worker in this process: the same episodes, one `generate` call per prompt;
- batched, 1 and 2 workers as Ray actors (groups split between them, as the trainer does).
- batched, 1 worker, environment made slow (FaultyEnv step_delay_s: 10 ms per step, like a remote
  environment) with env_threads=1 vs 8: what running environment steps concurrently buys.
Every case also counts the tokens the engine generated for episodes that had already finished
(must be 0: only unfinished episodes generate).

    .venv/bin/python bench/rollout.py              # 3 repeats
    .venv/bin/python bench/rollout.py --repeats 1

Prints a table and writes bench/results/rollout-cpu-<commit>.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import statistics
import subprocess
import time

import numpy as np
import ray
import torch
from rich.console import Console
from rich.table import Table

from hgpo.config import Config
from hgpo.rollout.loop import EpisodeSpec
from hgpo.rollout.worker import RolloutWorker
from hgpo.train import validate_overrides
from hgpo.trainer import group_seed
from hgpo.warm_start import prepare_policy

ROOT = pathlib.Path(__file__).resolve().parents[1]


class CountingEngine:
    """Delegates to an engine, one call per batch or per prompt, and records every call's batch size."""

    def __init__(self, engine, one_by_one: bool):
        self.engine, self.one_by_one = engine, one_by_one
        self.calls: list[int] = []
        self.tokens = 0

    def generate(self, prompts, params, seed):
        self.calls.append(len(prompts))
        if self.one_by_one:
            out = [self.engine.generate([p], params, seed + i)[0] for i, p in enumerate(prompts)]
        else:
            out = self.engine.generate(prompts, params, seed)
        self.tokens += sum(len(g.token_ids) for g in out)
        return out

    def __getattr__(self, name):
        return getattr(self.engine, name)


def episode_specs(cfg: Config, iteration: int, workers: int) -> list[list[EpisodeSpec]]:
    """The trainer's split: groups round-robin over workers, a group never across two."""
    specs: list[list[EpisodeSpec]] = [[] for _ in range(workers)]
    for group in range(cfg.rollout.num_groups):
        seed = group_seed(cfg.trainer.seed, iteration, group)
        specs[group % workers] += [
            EpisodeSpec(group, group * cfg.rollout.group_size + j, seed) for j in range(cfg.rollout.group_size)
        ]
    return specs


def wasted_tokens(batch, counting: CountingEngine) -> int:
    """Tokens the engine generated that no row of the batch holds, plus prompts it got beyond the episodes
    still running at each turn: 0 when finished episodes generate nothing."""
    _, turns = np.unique(batch.traj_ids, return_counts=True)
    running = [int(np.sum(turns > t)) for t in range(len(counting.calls))]
    extra_prompts = sum(max(c - r, 0) for c, r in zip(counting.calls, running))
    return extra_prompts + counting.tokens - int(batch.response_ids.lengths.sum())


def in_process(cfg: Config, model_path: str, one_by_one: bool, repeats: int) -> dict:
    worker = RolloutWorker(cfg.env, cfg.rollout, model_path, cfg.model.dtype, "bench")
    counting = CountingEngine(worker.engine, one_by_one)
    worker.engine = counting
    worker.rollout(episode_specs(cfg, 0, 1)[0], seed=1)  # warm-up
    times, steps, tokens, extra, generate_s, env_s = [], [], [], [], [], []
    for r in range(repeats):
        counting.calls, counting.tokens = [], 0
        start = time.perf_counter()
        batch, stats = worker.rollout(episode_specs(cfg, r + 1, 1)[0], seed=r)
        times.append(time.perf_counter() - start)
        steps.append(len(batch))
        tokens.append(counting.tokens)
        extra.append(wasted_tokens(batch, counting))
        generate_s.append(stats["rollout/generate_s"])
        env_s.append(stats["rollout/env_s"])
    return summarize(times, steps, tokens, extra, generate_s, env_s, calls=len(counting.calls))


def with_actors(cfg: Config, model_path: str, workers: int, repeats: int) -> dict:
    actor = ray.remote(RolloutWorker).options(num_cpus=1)
    pool = [actor.remote(cfg.env, cfg.rollout, model_path, cfg.model.dtype, f"rollout-{i}") for i in range(workers)]
    ray.get([w.rollout.remote(s, seed=1) for w, s in zip(pool, episode_specs(cfg, 0, workers))], timeout=600)
    times, steps, tokens, generate_s, env_s = [], [], [], [], []
    for r in range(repeats):
        start = time.perf_counter()
        refs = [w.rollout.remote(s, seed=r) for w, s in zip(pool, episode_specs(cfg, r + 1, workers))]
        results = ray.get(refs, timeout=600)
        times.append(time.perf_counter() - start)
        steps.append(sum(len(b) for b, _ in results))
        tokens.append(sum(int(b.response_ids.lengths.sum()) for b, _ in results))
        generate_s.append(max(s["rollout/generate_s"] for _, s in results))
        env_s.append(max(s["rollout/env_s"] for _, s in results))
    for w in pool:
        ray.kill(w)
    return summarize(times, steps, tokens, None, generate_s, env_s, calls=None)  # tokens checked in process


def summarize(times, steps, tokens, extra, generate_s, env_s, calls) -> dict:
    wall = statistics.median(times)
    return {
        "wall_s": wall,
        "env_steps": statistics.median(steps),
        "tokens": statistics.median(tokens),
        "env_steps_per_s": statistics.median(s / t for s, t in zip(steps, times)),
        "tokens_per_s": statistics.median(k / t for k, t in zip(tokens, times)),
        "generate_s": statistics.median(generate_s),
        "env_s": statistics.median(env_s),
        "tokens_for_finished_episodes": max(extra) if extra is not None else None,
        "generate_calls": calls,
        "repeats": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = validate_overrides([])
    model_path = prepare_policy(cfg)  # the default job's warm-started tiny policy (cached after the first run)
    torch.set_num_threads(1)
    rows = [
        {"case": "batched, 1 worker (in process)", **in_process(cfg, model_path, False, args.repeats)},
        {"case": "one-by-one, 1 worker (in process)", **in_process(cfg, model_path, True, args.repeats)},
    ]
    for threads in (1, 8):
        slow = validate_overrides(
            ["env=faulty", "env.kwargs.every=0", "env.kwargs.step_delay_s=0.01", f"rollout.env_threads={threads}"]
        )
        result = in_process(slow, model_path, False, args.repeats)
        rows.append({"case": f"slow env (10 ms/step), {threads} env thread(s)", **result})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for workers in (1, 2):
        result = with_actors(cfg, model_path, workers, args.repeats)
        rows.append({"case": f"batched, {workers} Ray worker(s)", **result})
    ray.shutdown()
    episodes = cfg.rollout.num_groups * cfg.rollout.group_size
    table = Table(title=f"rollout: {episodes} KeyRoom episodes, warm-started tiny policy, hf engine, CPU")
    for column in ("case", "wall s", "env steps", "steps/s", "tokens/s", "generate s", "env s", "tokens wasted"):
        table.add_column(column, justify="right")
    for r in rows:
        wasted = r["tokens_for_finished_episodes"]
        table.add_row(r["case"], f"{r['wall_s']:.2f}", f"{r['env_steps']:.0f}", f"{r['env_steps_per_s']:.0f}",
                      f"{r['tokens_per_s']:.0f}", f"{r['generate_s']:.2f}", f"{r['env_s']:.3f}",
                      "-" if wasted is None else str(wasted))  # fmt: skip
    Console(width=160).print(table)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    out = ROOT / "bench" / "results" / f"rollout-cpu-{commit.stdout.strip() or 'nocommit'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"platform": platform.platform(), "torch": torch.__version__, "ray": ray.__version__, "cpus": 2}
    out.write_text(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine,
                               "episodes": episodes, "results": rows}, indent=2))  # fmt: skip
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
