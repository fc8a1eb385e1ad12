"""LoRA: the learner's peft wrapper, the adapter-only payload a sync ships, and its merge into base weights.

The payload names each adapted linear layer by its Hugging Face module name `m` and holds `m.lora_A` (r, in)
and `m.lora_B` (out, r), with B already multiplied by the scale alpha / r: a generator only computes
`m.weight = W_base + B @ A`. The learner saves the same merge as a plain Hugging Face model, and the
adapter itself in peft's format (`PeftModel.from_pretrained(base, <dir>)` loads it).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hgpo.config import LoRAConfig
from hgpo.weights import numpy_to_tensors

ADAPTER = "default"  # peft's name for the one adapter
_PEFT_PARAM = re.compile(rf"(?:base_model\.model\.)?(.+)\.lora_([AB])\.{ADAPTER}\.weight")
_PEFT_FILE_KEY = re.compile(r"\.(lora_[AB])\.weight$")
_FACTORS = (".lora_A", ".lora_B")


def wrap(model: torch.nn.Module, cfg: LoRAConfig) -> torch.nn.Module:
    """The peft model: base weights frozen, a rank-`cfg.rank` adapter (B = 0 at start) on every target layer."""
    from peft import LoraConfig, get_peft_model  # only LoRA runs pay peft's import time (about 1 s)

    config = LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=list(cfg.target_modules) or "all-linear",
        task_type="CAUSAL_LM",
    )  # fmt: skip
    # The adapter keeps the model's dtype, like every trained weight here (FSDP2 shards one dtype per group).
    model = get_peft_model(model, config, autocast_adapter_dtype=False)
    # The payload and the merge know nn.Linear only: refuse what they would drop or merge transposed.
    others = [n for n, p in model.named_parameters() if p.requires_grad and not _PEFT_PARAM.fullmatch(n)]
    if others or config.fan_in_fan_out:
        raise ValueError(
            f"learner.lora.target_modules={list(cfg.target_modules)}: only nn.Linear layers can be adapted, "
            f"got {others[:3] or 'Conv1D (fan_in_fan_out) layers'}"
        )
    return model


def adapter_payload(params: Mapping[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """The wire form of the adapter among `params` (peft parameter names; other names are skipped)."""
    payload = {}
    for name, tensor in params.items():
        if match := _PEFT_PARAM.fullmatch(name):
            module, factor = match.groups()
            payload[f"{module}.lora_{factor}"] = tensor.detach() * scale if factor == "B" else tensor.detach()
    return payload


def is_adapter(state: Mapping[str, object]) -> bool:
    """True if `state` is an adapter payload rather than full weights."""
    return bool(state) and all(name.split("::")[0].endswith(_FACTORS) for name in state)


def merge(base: Mapping[str, torch.Tensor], adapter: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`m.weight = base[m.weight] + B @ A` (float32 math, the adapter's dtype out) for each module m of `adapter`."""
    merged = {}
    for name, a in adapter.items():
        if name.endswith(".lora_A"):
            module = name.removesuffix(".lora_A")
            b = adapter[f"{module}.lora_B"]
            merged[f"{module}.weight"] = (base[f"{module}.weight"].float() + b.float() @ a.float()).to(a.dtype)
    return merged


def merged_state(peft_state: Mapping[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """Hugging Face state dict of the merged model, from the peft model's full state dict."""
    base = {
        name.removeprefix("base_model.model.").replace(".base_layer.", "."): tensor
        for name, tensor in peft_state.items()
        if ".lora_" not in name
    }
    return base | merge(base, adapter_payload(peft_state, scale))


class BaseWeights:
    """A generator's copy of the weights an adapter modifies, read once from the initial model's safetensors."""

    def __init__(self, model_path: str):
        self.model_path, self.weights = Path(model_path), {}

    def merge(self, payload: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
        """The merged weights of every module in `payload` (an adapter that arrived by either sync)."""
        # On the CPU, where the base weights are, also when the adapter came by a CUDA broadcast.
        adapter = {name: tensor.cpu() for name, tensor in numpy_to_tensors(payload).items()}
        wanted = [f"{name.removesuffix('.lora_A')}.weight" for name in adapter if name.endswith(".lora_A")]
        new = [name for name in wanted if name not in self.weights]
        if new:
            self.weights.update(read_safetensors(self.model_path, new))
        return merge(self.weights, adapter)


def read_safetensors(model_path: Path, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors of a Hugging Face directory (one file, or shards listed in model.safetensors.index.json)."""
    index = model_path / "model.safetensors.index.json"
    files = json.loads(index.read_text())["weight_map"] if index.is_file() else {}
    by_file = defaultdict(list)
    for name in names:
        by_file[files.get(name, "model.safetensors")].append(name)
    out = {}
    for file, group in by_file.items():
        with safe_open(model_path / file, framework="pt") as f:
            missing = sorted(set(group) - set(f.keys()))
            if missing:
                raise ValueError(
                    f"LoRA merge: {missing[:3]} not in {model_path / file}; was the adapter trained on another model?"
                )
            out.update({name: f.get_tensor(name) for name in group})
    return out


def save_adapter(model: torch.nn.Module, peft_state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write the adapter of `peft_state` in peft's format (adapter_config.json + adapter_model.safetensors)."""
    from peft import get_peft_model_state_dict

    path.mkdir(parents=True, exist_ok=True)
    state = get_peft_model_state_dict(model, state_dict=dict(peft_state), save_embedding_layers=False)
    save_file({k: v.contiguous() for k, v in state.items()}, path / "adapter_model.safetensors", {"format": "pt"})
    model.peft_config[ADAPTER].save_pretrained(str(path))


def load_adapter(path: Path) -> dict[str, torch.Tensor]:
    """What `save_adapter` wrote, under the live peft model's parameter names."""
    state = load_file(path / "adapter_model.safetensors")
    return {_PEFT_FILE_KEY.sub(rf".\1.{ADAPTER}.weight", name): tensor for name, tensor in state.items()}
