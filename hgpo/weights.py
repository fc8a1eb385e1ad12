"""Model weights <-> NumPy arrays, the form in which they travel through Ray's object store."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import torch

# NumPy has no bfloat16: such tensors travel as int16 bit patterns under a suffixed name.
_BF16_SUFFIX = "::bf16"


def tensors_to_numpy(tensors: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Name -> contiguous CPU array, e.g. of `model.state_dict()` (bfloat16 travels as int16 bits)."""
    state: dict[str, np.ndarray] = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu").contiguous()
        if tensor.dtype == torch.bfloat16:
            state[name + _BF16_SUFFIX] = tensor.view(torch.int16).numpy()
        else:
            state[name] = tensor.numpy()
    return state


def load_numpy_state(model: torch.nn.Module, state: Mapping[str, np.ndarray]) -> int:
    """Copy `state` into `model` in place (every key must match); return the number of bytes copied."""
    own = model.state_dict()
    names = {k.removesuffix(_BF16_SUFFIX) for k in state}
    if names != set(own):
        missing, extra = sorted(set(own) - names), sorted(names - set(own))
        raise ValueError(f"weight update does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
    nbytes = 0
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for key, array in state.items():
            tensor = torch.from_numpy(array)
            if key.endswith(_BF16_SUFFIX):
                key, tensor = key.removesuffix(_BF16_SUFFIX), tensor.view(torch.bfloat16)
            own[key].copy_(tensor)
            nbytes += array.nbytes
    return nbytes
