"""The starting policy: the tiny model or model.path, optionally warm-started, cached as a Hugging Face directory.

The warm start is supervised fine-tuning (hgpo/sft.py) on the environment's expert episodes in which each
action is, with probability `epsilon`, replaced by a uniformly random admissible action (epsilon = 1, the
default: the data shows only the answer format and the admissible actions, never which action is right, so
everything the policy learns about the task comes from RL). Every example is rendered through the rollout's
own prompt and the model's chat template. The tiny model always needs it (it starts random); a pretrained
model gets it with `model.warm_start.enabled=true`, as a cold start for a chat model that does not yet answer
in the `<think>...</think><action>...</action>` format. The result is saved under
`model.cache_dir/<hash of everything that shaped it>`, the base model's identity included, and loaded back with
`from_pretrained` like any other checkpoint.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from envs import make_env
from envs.base import SEED_SPLITS
from hgpo.config import Config, EnvConfig, WarmStartConfig
from hgpo.model_source import ModelSource, model_identity
from hgpo.rollout.memory import Memory
from hgpo.rollout.prompts import env_user_message

log = logging.getLogger(__name__)

WARM_START_FORMAT = 1  # bump when the data or the training below changes meaning
SOLVER_SEED_BASE = SEED_SPLITS["warm_start"].start  # disjoint from training and held-out seeds (envs/base.py)
THOUGHT = "I pick an action."


def solver_examples(env_cfg: EnvConfig, ws: WarmStartConfig, seed: int) -> list[tuple[str, str]]:
    """(user message, response) pairs from `ws.episodes` epsilon-noisy expert episodes.

    Each turn records, with probability `epsilon`, a uniformly random admissible action, else the expert's. Where
    there is nothing to draw from (no admissible list: ScienceWorld, WebShop's search page) the expert's action is
    recorded; where the expert has none (it left its gold path after a random action, or the env has no expert)
    a random admissible action is; with neither, the episode's examples end there. Raise ValueError if that
    leaves no example at all."""
    rng = random.Random(seed)
    env = make_env(env_cfg.name, **env_cfg.kwargs)
    examples = []
    for episode in range(ws.episodes):
        observation, info = env.reset(SOLVER_SEED_BASE + episode)
        memory = Memory(env_cfg.history_length)
        for _ in range(env_cfg.max_steps):
            admissible = info.get("admissible_actions") or []
            noisy = bool(admissible) and rng.random() < ws.epsilon
            action = rng.choice(admissible) if noisy else _expert_action(env, admissible, rng)
            if action is None:
                break
            message = env_user_message(env, memory.recent(), observation, admissible, memory.steps_taken)
            examples.append((message, f"<think> {THOUGHT} </think><action> {action} </action>"))
            memory.add(observation, action)
            observation, _, done, info = env.step(action)
            if done:
                break
    env.close()
    if not examples:
        raise ValueError(
            f"model.warm_start: env {env_cfg.name!r} gave no example, since it lists no admissible actions and has "
            "no expert (expert_action) to record; set model.warm_start.enabled=false"
        )
    return examples


def _expert_action(env, admissible: list[str], rng: random.Random) -> str | None:
    """The expert's next action; else a random admissible one; None when there is neither."""
    expert = getattr(env, "expert_action", None)
    if expert is not None:
        try:
            return expert()
        except RuntimeError:  # none from here: off the gold path, or the game can no longer be won
            pass
    return rng.choice(admissible) if admissible else None


def prepare_policy(cfg: Config, source: ModelSource | None = None) -> str:
    """Return the policy directory: model.path as resolved (`source`), its warm-started copy, or the tiny model
    (built and, unless model.warm_start.enabled=false, warm-started); built once, then taken from the cache."""
    if source is not None and not cfg.model.warm_start.enabled:
        return source.path
    recipe = {
        "format": WARM_START_FORMAT,
        "warm_start": vars(cfg.model.warm_start),
        "env": {
            "name": cfg.env.name,
            "kwargs": cfg.env.kwargs,
            "history_length": cfg.env.history_length,
            "max_steps": cfg.env.max_steps,
            "source": env_source_digest(cfg.env.name),
        },
        "seed": cfg.trainer.seed,
    }
    if source is None:
        recipe["tiny"] = vars(cfg.model.tiny)
        return _cached(cfg, "tiny", recipe, lambda out: _build_tiny(cfg, out))
    recipe["base"] = model_identity(source)
    recipe["lora"] = vars(cfg.learner.lora) if cfg.learner.lora.rank else None
    recipe["micro_batch_tokens"] = cfg.learner.micro_batch_tokens
    return _cached(cfg, "warm", recipe, lambda out: _warm_start_pretrained(cfg, source.path, out))


def env_source_digest(name: str) -> str | None:
    """Digest of a registered environment's module: when its texts or rules change, so does the warm start's
    cache key (a model warm-started on the old texts would meet words its tokenizer lacks). None for an import
    path, which is not imported here."""
    from envs.registry import ENVIRONMENTS

    if name not in ENVIRONMENTS:
        return None
    return hashlib.sha256(Path(inspect.getsourcefile(ENVIRONMENTS[name])).read_bytes()).hexdigest()[:16]


def _cached(cfg: Config, prefix: str, recipe: dict, build: Callable[[Path], None]) -> str:
    """`model.cache_dir/<prefix>-<env>-<hash of recipe>`, built by `build(tmp_dir)` unless it already exists."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(cfg.model.cache_dir).expanduser() / f"{prefix}-{cfg.env.name}-{digest}"
    if (path / "recipe.json").is_file():
        log.info("warm start: using cached model %s", path)
        return str(path)
    start = time.perf_counter()
    tmp = path.with_name(path.name + f".tmp{random.randrange(1 << 30)}")
    build(tmp)
    (tmp / "recipe.json").write_text(json.dumps(recipe, indent=2, default=str))
    if path.exists():  # another run finished first: keep theirs
        shutil.rmtree(tmp)
    else:
        tmp.rename(path)
    log.info("warm start: built %s in %.1f s", path, time.perf_counter() - start)
    return str(path)


def _build_tiny(cfg: Config, out: Path) -> None:
    from hgpo.sft import fine_tune
    from hgpo.tiny_model import build_model, build_tokenizer

    ws = cfg.model.warm_start
    examples = solver_examples(cfg.env, ws, cfg.trainer.seed)
    # step counters can run past what the solver reached (invalid turns do not move the agent)
    counters = " ".join(str(i) for i in range(cfg.env.max_steps + 1))
    tokenizer = build_tokenizer([m + " " + r for m, r in examples] + [counters])
    model = build_model(cfg.model.tiny, tokenizer, cfg.trainer.seed)
    if ws.enabled:  # the tiny model's batches fit in one pass
        model = fine_tune(model, tokenizer, examples, ws, cfg.trainer.seed)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _warm_start_pretrained(cfg: Config, base_path: str, out: Path) -> None:
    """Fine-tune model.path (in float32, on CUDA when the driver has it; LoRA merged) and save it in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hgpo.sft import fine_tune

    log.info("warm start: fine-tuning %s on %s expert episodes", base_path, cfg.env.name)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    examples = solver_examples(cfg.env, cfg.model.warm_start, cfg.trainer.seed)
    model = fine_tune(
        model, tokenizer, examples, cfg.model.warm_start, cfg.trainer.seed, cfg.learner.lora,
        micro_batch_tokens=cfg.learner.micro_batch_tokens,
    )  # fmt: skip
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
