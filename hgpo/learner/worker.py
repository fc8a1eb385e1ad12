"""Learner: one rank of the policy update (wrapped as a Ray actor by hgpo.learner.group).

With one rank the model is a plain module; with several (or with CPU offload), ranks join a torch.distributed
group (gloo on CPU, NCCL on GPUs) and shard the model with FSDP2, each rank loading only its own shard
(hgpo.learner.loading). Weights and optimizer state are float32 (master weights); `model.dtype` is the compute
dtype. Every rank receives the whole StepBatch and runs its share of each mini-batch (hgpo.learner.plan);
gradients are summed across ranks once per mini-batch, so all ranks end each step with identical weights,
equal to a one-rank update up to float summation order. Logprobs come from the response positions only
(hgpo.learner.logprobs). A rank trains on its GPU when it has one (Ray shows an actor its own GPUs as
cuda:0..), else on the CPU; weights leave it as CPU tensors or NumPy arrays.
"""

from __future__ import annotations

import logging
import math
import resource
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer

from hgpo import lora
from hgpo.batch import StepBatch
from hgpo.config import LearnerConfig
from hgpo.file_integrity import seal_directory
from hgpo.learner import distributed, loading, logprobs
from hgpo.learner.loss import low_var_kl, ppo_clip_loss
from hgpo.learner.plan import rank_micro_batches, update_plan
from hgpo.sync.broadcast import BroadcastGroup, BroadcastSpec, Layout, Rendezvous, layout_of
from hgpo.weights import FlatParameters, FlatState, cast_floats, tensors_to_numpy, weights_digest

TRAINING_STATE = "optimizer.pt"
ADAPTER_DIR = "adapter"  # LoRA checkpoints: the adapter in peft's format, beside the merged model
STAT_KEYS = ("policy", "entropy", "approx_kl", "clip_frac", "kl")
log = logging.getLogger(__name__)
Estimator = Callable[[StepBatch], tuple[np.ndarray, dict[str, float]]]
Describe = Callable[..., Any]
"""describe(batch with advantages, iteration=, policy_version=, decode=) -> BatchDetail (hgpo.batch_detail)."""


class Learner:
    """PPO-clip updates on StepBatches; exports its weights (with LoRA: only the adapter) for the generators."""

    def __init__(
        self, cfg: LearnerConfig, model_path: str, dtype: str, temperature: float, seed: int,
        rank: int = 0, world_size: int = 1, reference_path: str | None = None, estimator: Estimator | None = None,
        describe: Describe | None = None,
    ):  # fmt: skip
        """`dtype`: the compute dtype (model.dtype); weights and optimizer state are float32 whatever it is.
        `reference_path`: the starting policy, the KL reference (default `model_path`; a resumed learner
        loads the checkpoint from `model_path` but keeps the run's starting policy as reference).
        `estimator(batch) -> (advantages, adv/ metrics)`: what `learn` runs (hgpo.learner.estimate);
        `describe`: what rank 0 says about each learned batch (take_detail), None for nothing.

        An unsharded rank loads its model here. A rank that will run FSDP2 (several ranks, or offload) builds
        it empty on the meta device and loads only its shard in init_distributed."""
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(seed)
        self.cfg, self.temperature, self.seed = cfg, temperature, seed
        self.rank, self.world_size, self.sharded = rank, world_size, False
        self.listener: socket.socket | None = None  # rank 0's process-group port, from rendezvous_address
        self.compute_dtype = getattr(torch, dtype)
        self.model_path, self.reference_path = model_path, reference_path or model_path
        self.fsdp = uses_fsdp(cfg, world_size)
        self.estimator, self.describe, self.detail = estimator, describe, None
        self.device = _device()
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # NCCL and FSDP2 use the current device
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_token_id = self.tokenizer.pad_token_id or 0
        build = loading.empty_model if self.fsdp else loading.full_model
        self.model = build(model_path, torch.float32)
        self.lora_scale = cfg.lora.alpha / cfg.lora.rank if cfg.lora.rank else 0.0
        if cfg.lora.rank:  # model_path is then always the base model; a resumed adapter comes with the training state
            self.model = lora.wrap(self.model, cfg.lora)
        if cfg.gradient_checkpointing:
            loading.enable_checkpointing(self.model)
        self.model.train()
        logprobs.attach(self.model)
        # The KL reference is the starting policy, frozen, in the compute dtype; sharded like the policy under
        # FSDP2. With LoRA it is the base model itself, run with the adapter disabled: no second copy.
        self.reference = None
        if cfg.kl_coef > 0 and not cfg.lora.rank:
            self.reference = build(self.reference_path, self.compute_dtype).eval().requires_grad_(False)
            logprobs.attach(self.reference)
        self.optimizer_steps = 0
        self.offloaded = False  # colocated: weights and optimizer state are in host memory during the rollout
        self.flat = None
        if not self.fsdp:
            self.model.to(self.device)
            if cfg.lora.rank:
                loading.init_adapter(self.model, seed)
            if self.reference is not None:
                self.reference.to(self.device)
            # One rank, full weights: the weights live in one flat buffer that the object-store sync ships as is.
            self.flat = FlatParameters(self.model) if not cfg.lora.rank else None
            self._build_optimizer()

    def rendezvous_address(self, ip: str) -> tuple[str, int]:
        """Rank 0's address (`ip`: its node's IP, as Ray knows it) and a port there for the process group, which
        this rank already listens on (on `ip` only) until init_distributed hands it to the group's store."""
        self.listener = distributed.listen(ip)
        return ip, self.listener.getsockname()[1]

    def init_distributed(self, address: str, port: int, timeout_s: float) -> str:
        """Join the process group, shard the (empty) models with FSDP2, load this rank's shards, and build the
        optimizer over them."""
        listener, self.listener = self.listener, None
        backend = distributed.init_process_group(
            address, port, self.rank, self.world_size, timeout_s, self.device, listener
        )
        self._shard_and_load(self.model, self.model_path, offload=self.cfg.offload, frozen=False)
        if self.cfg.lora.rank:
            loading.init_adapter(self.model, self.seed, self.rank, self.world_size)
        if self.reference is not None:
            self._shard_and_load(self.reference, self.reference_path, offload=self.cfg.ref_offload, frozen=True)
        self.sharded = True
        self._build_optimizer()
        return backend

    def _shard_and_load(self, model: torch.nn.Module, path: str, offload: bool, frozen: bool) -> None:
        distributed.shard_model(model, self.compute_dtype, offload, frozen)
        logprobs.attach(model)  # registers the response-only forward with FSDP2
        loading.materialize(model, "cpu" if offload else self.device)
        loading.load_shards(model, path, self.rank, self.world_size)

    def _build_optimizer(self) -> None:
        trainable = [p for p in self.model.parameters() if p.requires_grad]  # with LoRA: the adapter only
        # fused: one kernel per step and no model-sized temporaries (foreach allocates one for sqrt(v))
        self.optimizer = torch.optim.AdamW(
            trainable, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=True
        )  # fmt: skip
        warmup = self.cfg.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )

    # -- forward ----------------------------------------------------------------------------------
    def _inputs(self, batch: StepBatch, rows: np.ndarray) -> logprobs.ForwardInputs:
        pairs = [(batch.prompt_ids[int(r)], batch.response_ids[int(r)]) for r in rows]
        return logprobs.forward_inputs(pairs, self.pad_token_id, self.device)

    def _logprobs(self, model, inputs: logprobs.ForwardInputs, with_entropy: bool):
        """(N,) logprobs of the response tokens (and their entropy), in the compute dtype: autocast when the
        model is not sharded (FSDP2's MixedPrecisionPolicy casts a sharded one)."""
        mixed = self.compute_dtype != torch.float32 and not self.sharded
        with torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=mixed):
            return logprobs.response_logprobs(
                model, inputs, self.temperature, with_entropy, response_only=self.cfg.response_only_logits
            )  # fmt: skip

    @torch.no_grad()
    def recompute_logprobs(self, batch: StepBatch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Current and reference logprobs of every response token of `rows`, laid out like
        batch.response_ids.values (zeros elsewhere). Ranks split the rows and sum their parts."""
        lengths = batch.prompt_ids.lengths + batch.response_ids.lengths
        out = torch.zeros((2, batch.response_ids.values.size), dtype=torch.float64, device=self.device)
        for mb in rank_micro_batches(lengths, rows, self.cfg.micro_batch_tokens, self.rank, self.world_size):
            inputs = self._inputs(batch, mb)
            real, positions = inputs.mask > 0, torch.from_numpy(_token_positions(batch, mb)).to(self.device)
            out[0, positions] = self._logprobs(self.model, inputs, with_entropy=False)[0][real].double()
            if self.cfg.kl_coef > 0:
                out[1, positions] = self._reference_logprobs(inputs)[real].double()
        out = distributed.all_reduce_sum(out, self.sharded).cpu().numpy()
        return out[0], out[1] if self.cfg.kl_coef > 0 else None

    def _reference_logprobs(self, inputs: logprobs.ForwardInputs) -> torch.Tensor:
        if self.reference is not None:
            return self._logprobs(self.reference, inputs, with_entropy=False)[0]
        with self.model.disable_adapter():  # LoRA: the frozen base model is the starting policy
            return self._logprobs(self.model, inputs, with_entropy=False)[0]

    # -- update -----------------------------------------------------------------------------------
    def learn(self, version: int, *parts: StepBatch) -> dict[str, float]:
        """One update from the rollout's batches, in order (Ray fetched them into this process): concatenate,
        add returns and advantages with the estimator, update. Every rank runs the estimator on the same rows:
        it is deterministic NumPy, so the ranks agree without a broadcast and none waits for another.
        `version`: the policy version this learner holds; older rows are corrected for their lag."""
        start = time.perf_counter()
        batch = StepBatch.concat(parts)
        advantages, adv_stats = self.estimator(batch)
        adv_stats["time/advantage_s"] = time.perf_counter() - start
        staleness = None if batch.policy_versions is None else version - batch.policy_versions
        batch = batch.with_advantages(advantages)
        if self.describe is not None and self.rank == 0:  # the driver never holds the rows: describe them here
            self.detail = self.describe(batch, iteration=version, policy_version=version, decode=self._decode)
        return self.update(batch, staleness) | adv_stats

    def take_detail(self) -> Any:
        """The BatchDetail of the last `learn` (rank 0; None elsewhere or without `describe`), then forgets it."""
        detail, self.detail = self.detail, None
        return detail

    def _decode(self, ids: np.ndarray, skip_special_tokens: bool) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def update(self, batch: StepBatch, staleness: np.ndarray | None = None) -> dict[str, float]:
        """Recompute old logprobs, then ppo_epochs x num_minibatches optimizer steps over the usable rows.
        `staleness` (int[N]): versions each row lags behind this learner; lagging rows are corrected
        (learner.staleness_correction), the others train exactly as without it."""
        assert batch.advantages is not None, "the trainer fills advantages before the update"
        start = time.perf_counter()
        rows = np.flatnonzero(~batch.traj_failed & (batch.response_ids.lengths > 0))
        if rows.size == 0:  # every trajectory failed: nothing to learn from, keep the weights
            return {"learner/skipped_steps": float(self.cfg.ppo_epochs * num_minibatches(self.cfg, 0))}
        old_flat, ref_flat = self.recompute_logprobs(batch, rows)
        used = _token_positions(batch, rows)
        gap = np.abs(old_flat[used] - batch.response_logprobs.values[used])
        old_flat, weights_flat, lag_stats = self._correct_for_lag(batch, old_flat, staleness, used)
        lengths = batch.prompt_ids.lengths + batch.response_ids.lengths
        plan = update_plan(
            lengths, batch.response_ids.lengths, rows, epochs=self.cfg.ppo_epochs,
            num_minibatches=num_minibatches(self.cfg, rows.size), token_budget=self.cfg.micro_batch_tokens,
            rank=self.rank, world_size=self.world_size, rng=np.random.default_rng([self.seed, self.optimizer_steps]),
        )  # fmt: skip
        sums = np.zeros(len(STAT_KEYS))
        grad_norms, skipped, tokens, padded = [], 0, 0, 0
        for minibatch in plan:
            self.optimizer.zero_grad(set_to_none=True)
            step = torch.zeros(len(STAT_KEYS), dtype=torch.float64, device=self.device)  # NCCL reduces device tensors
            last = len(minibatch.micro_batches) - 1  # the same on every rank (plan.rank_micro_batches pads)
            for i, mb in enumerate(minibatch.micro_batches):
                if self.sharded:  # FSDP2: reduce-scatter once per mini-batch, after its last micro-batch
                    self.model.set_requires_gradient_sync(i == last or self.cfg.grad_sync_every_micro_batch)
                step += self._accumulate(batch, mb, old_flat, ref_flat, minibatch.token_count, weights_flat)
                tokens += int(lengths[mb].sum())
                padded += int(lengths[mb].max()) * len(mb) if len(mb) else 0
            sums += distributed.all_reduce_sum(step, self.sharded).cpu().numpy()
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            if math.isfinite(grad_norm):
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer_steps += 1
            else:  # a non-finite loss or gradient: skip this step, keep the weights
                log.warning("non-finite gradient norm %s: optimizer step skipped", grad_norm)
                skipped += 1
            grad_norms.append(grad_norm)
        steps = max(len(plan), 1)
        stats = {f"loss/{k}": float(v) / steps for k, v in zip(STAT_KEYS, sums)}
        stats.update({
            "learner/grad_norm": float(np.mean(grad_norms)),
            "learner/skipped_steps": float(skipped),
            "learner/lr": self.scheduler.get_last_lr()[0],
            "learner/logprob_gap_mean": float(gap.mean()),
            "learner/logprob_gap_max": float(gap.max()),
            "learner/padding_share": (padded - tokens) / max(tokens, 1),
            "learner/optimizer_steps": float(self.optimizer_steps),
            "learner/peak_memory_gb": _peak_memory_gb(),
            "perf/learner_tokens_per_s": tokens * self.world_size / max(time.perf_counter() - start, 1e-9),
        })  # fmt: skip
        return stats | lag_stats

    def _correct_for_lag(self, batch, old_flat, staleness, used) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """(old logprobs, per-token loss weights or None, stats) for rows generated by older policies.

        decoupled (Hilton et al. 2021, as AReaL): the PPO ratio stays anchored at the learner's recomputed
        logprobs (the proximal policy) and each token of a lagging row is weighted by the behaviour ratio
        min(pi_learner / pi_rollout, behaviour_weight_cap). truncated_is: the ratio is anchored at the rollout's
        logprobs, so the clip truncates the importance ratio. Rows of the current version keep weight 1 and the
        recomputed logprobs (with no lagging row nothing changes, bit for bit)."""
        if staleness is None:
            return old_flat, None, {}
        stale = np.repeat(staleness > 0, batch.response_ids.lengths)  # per token, like response_ids.values
        stats = {"learner/stale_token_share": float(stale[used].mean()) if used.size else 0.0}
        if not stale[used].any():
            return old_flat, None, stats
        rollout = batch.response_logprobs.values.astype(np.float64)
        if self.cfg.staleness_correction == "truncated_is":
            return np.where(stale, rollout, old_flat), None, stats
        ratio = np.exp(old_flat - rollout)
        weights = np.where(stale, np.minimum(ratio, self.cfg.behaviour_weight_cap), 1.0)
        lagging = used[stale[used]]
        stats["learner/behaviour_weight_mean"] = float(weights[lagging].mean())
        stats["learner/behaviour_weight_capped_share"] = float((ratio[lagging] > self.cfg.behaviour_weight_cap).mean())
        return old_flat, weights, stats

    def _accumulate(self, batch, rows, old_flat, ref_flat, token_count: int, weights_flat=None) -> torch.Tensor:
        """Forward and backward of one micro-batch; returns its share of the STAT_KEYS sums. Every per-token
        tensor is (N,): the micro-batch's response tokens, row after row. `weights_flat`: per-token loss weights
        of lagging rows (_correct_for_lag), or None."""
        inputs = self._inputs(batch, rows)
        logprobs_, entropy = self._logprobs(self.model, inputs, with_entropy=True)
        mask = inputs.mask
        old, ref, advantages = (torch.zeros_like(logprobs_) for _ in range(3))
        weights = None if weights_flat is None else torch.ones_like(logprobs_)
        if len(rows):
            flat = _token_positions(batch, rows)
            old = torch.from_numpy(old_flat[flat]).to(self.device, torch.float32)
            per_token = np.repeat(batch.advantages[rows], batch.response_ids.lengths[rows])
            advantages = torch.from_numpy(per_token.astype(np.float32)).to(self.device)
            if ref_flat is not None:
                ref = torch.from_numpy(ref_flat[flat]).to(self.device, torch.float32)
            if weights is not None:
                weights = torch.from_numpy(weights_flat[flat]).to(self.device, torch.float32)
        pg_loss, pg_stats = ppo_clip_loss(
            logprobs_, old, advantages, mask, clip_ratio=self.cfg.clip_ratio, clip_ratio_c=self.cfg.clip_ratio_c,
            token_count=token_count, weights=weights,
        )  # fmt: skip
        entropy_mean = (entropy * mask).sum() / token_count
        loss = pg_loss - self.cfg.entropy_coef * entropy_mean
        kl = torch.zeros((), device=self.device)
        if ref_flat is not None:
            kl = low_var_kl(logprobs_, ref, mask).sum() / token_count
            loss = loss + self.cfg.kl_coef * kl
        # The loss is a share of the all-rank token mean; FSDP averages gradients, so undo its division.
        (loss * self.world_size if self.sharded else loss).backward()
        values = (pg_loss, entropy_mean, pg_stats["approx_kl"], pg_stats["clip_frac"], kl)
        return torch.stack([v.detach().double() for v in values])  # on the device: no sync per micro-batch

    # -- colocated placement -------------------------------------------------------------------------
    def offload(self) -> None:
        """Free the device for the generators that share it (trainer.placement=colocated): weights, optimizer
        state and the KL reference go to host memory, gradients are dropped. A no-op on the CPU, and with
        learner.offload (FSDP2 keeps everything in host memory already)."""
        if self.device.type == "cpu" or self.offloaded or self.cfg.offload:
            return
        self.optimizer.zero_grad(set_to_none=True)
        self._move_to(torch.device("cpu"))
        torch.cuda.empty_cache()
        self.offloaded = True

    def onload(self) -> None:
        """Undo `offload` before an update."""
        if self.offloaded:
            self._move_to(self.device)
            self.offloaded = False

    def _move_to(self, device: torch.device) -> None:
        if self.flat is not None:
            self.flat.move_to(device)  # every weight stays a view of the one buffer
        else:
            self.model.to(device)  # FSDP2 moves the shards
        for state in self.optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value) and key != "step":  # AdamW keeps `step` on the CPU
                    state[key] = value.to(device)
        if self.reference is not None:
            self.reference.to(device)

    # -- weights ----------------------------------------------------------------------------------
    def _sync_state(self) -> dict[str, torch.Tensor]:
        """What a sync ships (every rank must call when sharded; complete on rank 0): the full weights, or with
        LoRA the adapter payload (hgpo.lora), gathered without gathering the frozen base."""
        if not self.cfg.lora.rank:
            return distributed.full_state_dict(self.model, self.sharded)
        trainable = ((name, p) for name, p in self.model.named_parameters() if p.requires_grad)
        return lora.adapter_payload(distributed.full_tensors(trainable), self.lora_scale)

    def _sync_shapes(self) -> dict[str, torch.Tensor]:
        """The tensors a sync ships, as they are (full weights) or as meta tensors (LoRA): names, shapes, dtypes."""
        if not self.cfg.lora.rank:
            return self.model.state_dict(keep_vars=True)
        meta = {n: torch.empty(p.shape, dtype=p.dtype, device="meta") for n, p in self.model.named_parameters()}
        return lora.adapter_payload(meta, self.lora_scale)

    def export_state(self, dtype: str | None = None) -> FlatState | dict[str, np.ndarray]:
        """What the object-store sync ships (rank 0; other ranks take part in a gather and return {}), floating-point
        weights cast to `dtype` (the generators'; None keeps the learner's): the flat weight buffer of an unsharded
        full-weight learner when no cast is needed (no copy), else state_numpy(dtype)."""
        if self.flat is not None and not _casts(self.flat.entries, dtype):
            return self.flat.export()
        return self.state_numpy(dtype)

    def state_numpy(self, dtype: str | None = None) -> dict[str, np.ndarray]:
        """The sync state as NumPy arrays, cast to `dtype` (on rank 0; other ranks take part in the gather and
        return {})."""
        state = self._sync_state()
        return tensors_to_numpy(cast_floats(state, dtype)) if self.rank == 0 else {}

    def sync_bytes(self, dtype: str | None = None) -> int:
        """Bytes that one sync ships at `dtype`: every tensor once (tied weights share one array)."""
        return self.weight_layout(dtype).nbytes

    def weight_layout(self, dtype: str | None = None) -> Layout:
        """Names, full shapes and wire dtypes (floating point at `dtype`) of the sync state, in the order the
        broadcast sends them; tied weights are sent once."""
        return layout_of(self._sync_shapes(), dtype)

    def host_broadcast(self, ip: str, timeout_s: float) -> int:
        """Rank 0 hosts the rendezvous of the generators' broadcast group on `ip` (its node's IP); returns the port."""
        self.rendezvous = Rendezvous(ip, timeout_s)
        return self.rendezvous.port

    def join_broadcast(self, spec: BroadcastSpec, layout: Layout) -> None:
        """Rank 0 joins the broadcast group as the sender of `layout`, then shuts the rendezvous down."""
        try:
            self.broadcast = BroadcastGroup(spec, 0, spec.address)
        finally:
            self.rendezvous.close()
        self.layout = layout

    def broadcast_weights(self, version: int) -> int:
        """Gather the sync state (every rank must call) and broadcast it from rank 0, cast to the layout's dtypes
        there; return the bytes sent."""
        state = self._sync_state()
        return self.broadcast.send(state, self.layout, version) if self.rank == 0 else 0

    def weights_digest(self) -> str:
        """SHA-256 of the full weights as this rank sees them, with LoRA merged as the generators merge it
        (every rank must call when sharded)."""
        state = distributed.full_state_dict(self.model, self.sharded, on_every_rank=True)
        if self.cfg.lora.rank:  # merged on the CPU like hgpo.lora.BaseWeights: a CUDA matmul may round differently
            state = lora.merged_state({name: tensor.cpu() for name, tensor in state.items()}, self.lora_scale)
        return weights_digest(state)

    def save(self, path: str) -> list[str]:
        """Write a Hugging Face directory (safetensors; with LoRA the merged model plus the adapter in
        `adapter/`) and optimizer, scheduler and RNG state (rank 0 writes; every rank must call). Refuses
        (ValueError) non-finite weights, so a broken state is never saved."""
        state = self.flat.state_dict_copy() if self.flat else distributed.full_state_dict(self.model, self.sharded)
        optimizer_state = distributed.full_optimizer_state(self.model, self.optimizer, self.sharded)
        if self.rank != 0:
            return []
        bad = [name for name, tensor in state.items() if not torch.isfinite(tensor).all()]
        if bad:
            raise ValueError(f"refusing to checkpoint non-finite weights: {bad[:3]}")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if self.cfg.lora.rank:
            lora.save_adapter(self.model, state, out / ADAPTER_DIR)
            state = lora.merged_state(state, self.lora_scale)
        model = self.model.get_base_model() if self.cfg.lora.rank else self.model
        model.save_pretrained(out, state_dict=state, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        training_state = {
            "optimizer": optimizer_state,
            "scheduler": self.scheduler.state_dict(),
            "optimizer_steps": self.optimizer_steps,
            "torch_rng": torch.get_rng_state(),
        }
        torch.save(training_state, out / TRAINING_STATE)
        return sorted(p.name for p in out.iterdir())

    def seal(self, path: str) -> dict[str, dict]:
        """fsync what `save` wrote to `path` and return its manifest (sizes, checksums); rank 0 only, else {}."""
        return seal_directory(Path(path)) if self.rank == 0 else {}

    def load_training_state(self, path: str) -> int:
        """Restore what `save` wrote besides the weights (which come from the constructor's model_path):
        optimizer, scheduler, step counter and RNG; with LoRA also the adapter (the constructor loaded the
        base model). Returns the optimizer step count."""
        if self.cfg.lora.rank:
            if not (Path(path) / ADAPTER_DIR).is_dir():
                raise ValueError(f"{path} holds no LoRA adapter: it was trained with learner.lora.rank=0")
            distributed.load_model_state(self.model, lora.load_adapter(Path(path) / ADAPTER_DIR), self.sharded)
        # On the CPU: torch.set_rng_state takes a CPU tensor, and loading the optimizer moves each state tensor
        # to its parameter's device (AdamW keeps its `step` counters on the CPU).
        state = torch.load(Path(path) / TRAINING_STATE, map_location="cpu", weights_only=True)
        distributed.load_optimizer_state(self.model, self.optimizer, state["optimizer"], self.sharded)
        self.scheduler.load_state_dict(state["scheduler"])
        self.optimizer_steps = int(state["optimizer_steps"])
        torch.set_rng_state(state["torch_rng"])
        bad = [name for name, p in self.model.named_parameters() if not _all_finite(p)]
        if bad:  # defence in depth: the manifest proves the bytes unchanged since the save, not the save sound
            raise ValueError(f"checkpoint {path}: non-finite weights in {bad[:3]}; resume from an older checkpoint")
        return self.optimizer_steps


def num_minibatches(cfg: LearnerConfig, rows: int) -> int:
    """Optimizer steps per epoch over `rows` usable rows: learner.num_minibatches, or with
    learner.minibatch_rows ceil(rows / minibatch_rows) (at least 1)."""
    if cfg.minibatch_rows is None:
        return cfg.num_minibatches
    return max(math.ceil(rows / cfg.minibatch_rows), 1)


def uses_fsdp(cfg: LearnerConfig, world_size: int) -> bool:
    """Whether the ranks run FSDP2 (and so join a process group, even alone): several ranks, or CPU offload."""
    return world_size > 1 or cfg.offload or cfg.ref_offload


def _device() -> torch.device:
    """This rank's device: its first visible GPU (Ray sets CUDA_VISIBLE_DEVICES per actor), else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def _casts(entries, dtype: str | None) -> bool:
    """True if casting floating-point weights to `dtype` changes any of the flat buffer's `entries`."""
    return dtype is not None and any(getattr(torch, d).is_floating_point and d != dtype for *_, d in entries)


def _all_finite(tensor: torch.Tensor) -> bool:
    """Whether this rank's part of `tensor` (its shard when sharded) holds only finite numbers."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return bool(torch.isfinite(local.detach()).all())


def _token_positions(batch: StepBatch, rows: np.ndarray) -> np.ndarray:
    """Indices into batch.response_ids.values of the response tokens of `rows`, row after row (int64)."""
    offsets = batch.response_ids.offsets
    return np.concatenate([np.arange(offsets[r], offsets[r + 1]) for r in rows] + [np.zeros(0, np.int64)])


def _peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB
