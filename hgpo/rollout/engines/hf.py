"""transformers engine: batched sampling with left padding and a KV cache; the CPU default."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hgpo.rollout.engines.base import Generation, SamplingParams
from hgpo.weights import load_state


class HFEngine:
    """Wraps `AutoModelForCausalLM.generate`; logprobs come from the raw logits of each sampled step."""

    def __init__(self, model_path: str, dtype: str = "float32", torch_threads: int = 1):
        torch.set_num_threads(torch_threads)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).eval()
        self.eos_token_id = tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.version = 0

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int) -> list[Generation]:
        if not prompts:
            return []
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, width - len(prompt) :] = 1
        torch.manual_seed(seed)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_new_tokens=params.max_tokens,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        new_tokens = out.sequences[:, width:]  # (batch, steps)
        logits = torch.stack(out.logits, dim=1).float() / params.temperature  # (batch, steps, vocab)
        token_logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        results = []
        for row in range(len(prompts)):
            ids = new_tokens[row].tolist()
            finished = self.eos_token_id in ids
            stop = ids.index(self.eos_token_id) + 1 if finished else len(ids)
            results.append(
                Generation(
                    token_ids=ids[:stop],
                    logprobs=token_logprobs[row, :stop].tolist(),
                    finish_reason="eos" if finished else "length",
                )
            )
        return results

    def load_weights(self, state: Mapping[str, np.ndarray | torch.Tensor], version: int) -> None:
        load_state(self.model, state, zero_copy=True)  # inference only: use the received memory as is
        self.version = version
