"""Checkpoints: a directory per iteration, written under a temporary name and renamed when complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import ray

COMPLETE_MARKER = "trainer_state.json"


def save_checkpoint(
    learner, run_dir: Path, iteration: int, trainer_state: dict[str, Any], config: dict[str, Any], timeout_s: float
) -> Path:
    """Save the policy (Hugging Face dir, safetensors), optimizer, trainer state and config of `iteration`.

    Everything is written to `.iter_N.tmp` first and renamed at the end, so a directory named
    `iter_N` is always complete; a half-written one keeps its temporary name and is never loaded.
    """
    root = run_dir / "checkpoints"
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".iter_{iteration:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ray.get(learner.save.remote(str(tmp / "policy")), timeout=timeout_s)
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    (tmp / COMPLETE_MARKER).write_text(json.dumps({"iteration": iteration, **trainer_state}, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final
