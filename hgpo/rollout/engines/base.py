"""The engine contract: typed sampling parameters and outputs, and the Engine protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k."""


@dataclass(frozen=True)
class Generation:
    token_ids: list[int]
    """Sampled ids exactly as generated, up to and including the stop token (EOS) if one was sampled."""
    logprobs: list[float]
    """log p(token) under the temperature-scaled distribution (before top-p/top-k), one per token."""
    finished: bool
    """True if generation stopped on EOS, False if it hit max_tokens."""


class Engine(Protocol):
    def generate(self, prompts: list[list[int]], params: SamplingParams, seed: int) -> list[Generation]:
        """Generate one response per prompt; outputs come back in input order."""
        ...

    def load_weights(self, state: Mapping[str, np.ndarray | torch.Tensor], version: int) -> None:
        """Replace the model's weights with `state` (name -> array or tensor) and record `version`."""
        ...
