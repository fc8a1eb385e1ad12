"""Learner: owns the trainable policy and its optimizer (wrapped as a Ray actor by the trainer)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hgpo.batch import StepBatch
from hgpo.config import LearnerConfig
from hgpo.learner.loss import ppo_clip_loss, token_entropy
from hgpo.weights import state_to_numpy

TRAINING_STATE = "optimizer.pt"
log = logging.getLogger(__name__)


def micro_batches(lengths: np.ndarray, rows: np.ndarray, token_budget: int) -> list[np.ndarray]:
    """Split `rows` into micro-batches whose padded size (rows x longest) stays within `token_budget`.

    Rows are sorted by length first so that each micro-batch pads little; a row longer than the budget
    gets a micro-batch of its own.
    """
    order = rows[np.argsort(lengths[rows], kind="stable")]
    batches, current, longest = [], [], 0
    for row in order:
        longest_if_added = max(longest, int(lengths[row]))
        if current and longest_if_added * (len(current) + 1) > token_budget:
            batches.append(np.asarray(current))
            current, longest_if_added = [], int(lengths[row])
        current.append(row)
        longest = longest_if_added
    if current:
        batches.append(np.asarray(current))
    return batches


class Learner:
    """PPO-clip updates on StepBatches; exports its weights as NumPy arrays for the generators."""

    def __init__(self, cfg: LearnerConfig, model_path: str, dtype: str, temperature: float, seed: int):
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(seed)
        self.cfg = cfg
        self.temperature = temperature
        self.seed = seed
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.pad_token_id = self.tokenizer.pad_token_id or 0
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype))
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = cfg.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.optimizer_steps = 0

    # -- forward ----------------------------------------------------------------------------------
    def _forward(self, batch: StepBatch, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logprobs and entropy of every response token of `rows`, on a right-padded grid.

        Returns (logprobs, entropy, mask), each (B, L-1): position p holds the prediction of token p+1.
        """
        prompts = [batch.prompt_ids[int(r)] for r in rows]
        responses = [batch.response_ids[int(r)] for r in rows]
        width = max(len(p) + len(r) for p, r in zip(prompts, responses))
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            input_ids[i, : len(p) + len(r)] = torch.from_numpy(np.concatenate([p, r]).astype(np.int64))
            attention_mask[i, : len(p) + len(r)] = 1
            mask[i, len(p) - 1 : len(p) + len(r) - 1] = 1.0
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
        logits = logits / self.temperature
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return logprobs, token_entropy(logits), mask

    @torch.no_grad()
    def recompute_logprobs(self, batch: StepBatch, rows: np.ndarray) -> list[np.ndarray]:
        """The current policy's logprob of every response token, one array per row of `rows`."""
        lengths = batch.prompt_ids.lengths + batch.response_ids.lengths
        out: dict[int, np.ndarray] = {}
        for mb in micro_batches(lengths, rows, self.cfg.micro_batch_tokens):
            logprobs, _, mask = self._forward(batch, mb)
            for i, row in enumerate(mb):
                out[int(row)] = logprobs[i][mask[i] > 0].numpy()
        return [out[int(r)] for r in rows]

    # -- update -----------------------------------------------------------------------------------
    def update(self, batch: StepBatch) -> dict[str, float]:
        """Recompute old logprobs, then ppo_epochs x num_minibatches optimizer steps over the usable rows."""
        assert batch.advantages is not None, "the trainer fills advantages before the update"
        start = time.perf_counter()
        rows = np.flatnonzero(~batch.traj_failed & (batch.response_ids.lengths > 0))
        if rows.size == 0:  # every trajectory failed: nothing to learn from, keep the weights
            return {"learner/skipped_steps": float(self.cfg.ppo_epochs * self.cfg.num_minibatches)}
        old = self.recompute_logprobs(batch, rows)
        old_by_row = dict(zip(rows.tolist(), old))
        gap = np.abs(np.concatenate(old) - np.concatenate([batch.response_logprobs[int(r)] for r in rows]))
        lengths = batch.prompt_ids.lengths + batch.response_ids.lengths
        rng = np.random.default_rng([self.seed, self.optimizer_steps])
        sums: dict[str, float] = {}
        tokens = padded = 0
        for _ in range(self.cfg.ppo_epochs):
            for minibatch in np.array_split(rng.permutation(rows), self.cfg.num_minibatches):
                if len(minibatch) == 0:
                    continue
                token_count = int(batch.response_ids.lengths[minibatch].sum())
                self.optimizer.zero_grad(set_to_none=True)
                step_stats: dict[str, float] = {}
                for mb in micro_batches(lengths, minibatch, self.cfg.micro_batch_tokens):
                    logprobs, entropy, mask = self._forward(batch, mb)
                    old_grid = torch.zeros_like(logprobs)
                    old_grid[mask > 0] = torch.from_numpy(np.concatenate([old_by_row[int(r)] for r in mb]))
                    adv = torch.from_numpy(batch.advantages[mb].astype(np.float32)).unsqueeze(1)
                    pg_loss, pg_stats = ppo_clip_loss(
                        logprobs,
                        old_grid,
                        adv,
                        mask,
                        clip_ratio=self.cfg.clip_ratio,
                        clip_ratio_c=self.cfg.clip_ratio_c,
                        token_count=token_count,
                    )
                    entropy_mean = (entropy * mask).sum() / token_count
                    (pg_loss - self.cfg.entropy_coef * entropy_mean).backward()
                    for key, value in (("policy", pg_loss), ("entropy", entropy_mean), *pg_stats.items()):
                        step_stats[key] = step_stats.get(key, 0.0) + value.item()
                    tokens += int(lengths[mb].sum())
                    padded += int(lengths[mb].max()) * len(mb)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
                if math.isfinite(grad_norm):
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer_steps += 1
                else:  # a non-finite loss or gradient: skip this step, keep the weights
                    log.warning("non-finite gradient norm %s: optimizer step skipped", grad_norm)
                    step_stats["skipped_steps"] = 1.0
                step_stats["grad_norm"] = grad_norm
                for key, value in step_stats.items():
                    sums[key] = sums.get(key, 0.0) + value
                sums["steps"] = sums.get("steps", 0.0) + 1.0
        steps = max(sums.pop("steps", 1.0), 1.0)
        elapsed = time.perf_counter() - start
        stats = {
            f"loss/{k}": v / steps for k, v in sums.items() if k in ("policy", "entropy", "approx_kl", "clip_frac")
        }
        stats.update(
            {
                "learner/grad_norm": sums.get("grad_norm", 0.0) / steps,
                "learner/skipped_steps": sums.get("skipped_steps", 0.0),
                "learner/lr": self.scheduler.get_last_lr()[0],
                "learner/logprob_gap_mean": float(gap.mean()) if gap.size else 0.0,
                "learner/logprob_gap_max": float(gap.max()) if gap.size else 0.0,
                "learner/padding_share": (padded - tokens) / max(tokens, 1),
                "learner/optimizer_steps": float(self.optimizer_steps),
                "perf/learner_tokens_per_s": tokens / max(elapsed, 1e-9),
            }
        )
        return stats

    # -- weights ----------------------------------------------------------------------------------
    def state_numpy(self) -> dict[str, np.ndarray]:
        return state_to_numpy(self.model)

    def save(self, path: str) -> list[str]:
        """Write a Hugging Face directory (safetensors) plus optimizer, scheduler and RNG state.

        Refuses (ValueError) to save non-finite weights, so a broken state never becomes a checkpoint.
        """
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise ValueError(f"refusing to checkpoint non-finite weights: {bad[:3]}")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        training_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "optimizer_steps": self.optimizer_steps,
            "torch_rng": torch.get_rng_state(),
        }
        torch.save(training_state, out / TRAINING_STATE)
        return sorted(p.name for p in out.iterdir())

    def load_training_state(self, path: str) -> int:
        """Restore what `save` wrote besides the weights (which come from the constructor's model_path):
        optimizer, scheduler, step counter and RNG. Returns the optimizer step count."""
        state = torch.load(Path(path) / TRAINING_STATE, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.optimizer_steps = int(state["optimizer_steps"])
        torch.set_rng_state(state["torch_rng"])
        return self.optimizer_steps
