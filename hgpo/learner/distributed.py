"""torch.distributed for the learner ranks: process group, FSDP2 sharding, full state dicts.

The same code runs gloo on CPU (so the test suite exercises it) and NCCL on GPUs. Under NCCL every tensor
that enters a collective lives on the rank's GPU: the model is moved there before it is sharded.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard

FULL_ON_CPU = StateDictOptions(full_state_dict=True, cpu_offload=True)


def listen(ip: str, port: int = 0) -> socket.socket:
    """A TCP socket listening on `ip` only (`ip`: this node's IP, as Ray knows it: the hostname resolves to
    127.0.x.1 on many hosts), on `port` (0: a free one), for rank 0's store to take over."""
    listener = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    listener.bind((ip, port))
    listener.listen()
    return listener


def init_process_group(
    address: str, port: int, rank: int, world_size: int, timeout_s: float, device: torch.device,
    listener: socket.socket | None = None,
) -> str:  # fmt: skip
    """Join the learners' process group (NCCL when the rank's `device` is a GPU, else gloo); return the backend.

    Rank 0 hosts the group's TCPStore on `address` only (never on all interfaces, as torch's own tcp:// init
    does), on `listener` (from `listen`) or, without one, a socket it binds to `address`:`port`; the other
    ranks connect to it. On GPUs the group has gloo for CPU tensors too: with learner.offload FSDP2 keeps shards
    and gradients (and so the gradient norm's partial sums and the gathered state dicts) on the host."""
    timeout = timedelta(seconds=timeout_s)
    if rank == 0:
        fd = (listener or listen(address, port)).detach()  # the store closes it when it shuts down
        store = dist.TCPStore(address, port, world_size, True, timeout, wait_for_workers=False, master_listen_fd=fd)
    else:
        store = dist.TCPStore(address, port, world_size, False, timeout)
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    # device_id binds NCCL to this rank's GPU up front instead of guessing it at the first collective.
    dist.init_process_group(
        backend, store=store, rank=rank, world_size=world_size, timeout=timeout,
        device_id=device if device.type == "cuda" else None,
    )  # fmt: skip
    return backend


def shard_model(model: torch.nn.Module, param_dtype: torch.dtype, offload: bool, frozen: bool = False) -> None:
    """FSDP2: shard every decoder layer, then the root. The shards keep the model's dtype (float32 master
    weights); forwards and backwards run in `param_dtype` and gradients are reduced in float32. `offload` keeps
    the shards (and gradients, optimizer state) in host memory. FSDP averages gradients over ranks; the learner
    multiplies its loss by the world size to turn that into the sum it needs (gloo has no PREMUL_SUM, so a
    divide factor of 1 is not an option on CPU). `frozen` (the KL reference, forward only): the root reshards
    after its forward too; by default FSDP2 keeps the root gathered for the backward that a frozen model never
    runs, so its embeddings and LM head would stay whole on every rank (on the GPU even when offloaded)."""
    policies = {"mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)}
    if offload:  # pinned host memory makes the copies to the GPU asynchronous; there is none to pin on a CPU
        policies["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    for module in model.modules():
        if type(module).__name__.endswith("DecoderLayer"):
            fully_shard(module, **policies)
    fully_shard(model, **policies, reshard_after_forward=True if frozen else None)
    assert isinstance(model, FSDPModule)


def full_state_dict(model: torch.nn.Module, sharded: bool, on_every_rank: bool = False) -> dict[str, torch.Tensor]:
    """Unsharded weights: unsharded, the model's own tensors (on its device). When sharded every rank must call;
    the result is complete on rank 0 only (moved to the CPU), or on every rank (on the device) with on_every_rank."""
    if not sharded:
        return model.state_dict()
    if on_every_rank:
        return full_tensors(model.state_dict().items())
    return get_model_state_dict(model, options=FULL_ON_CPU)


def full_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Name -> unsharded tensor on every rank (gathers DTensor shards: every rank must call, in the same order)."""
    return {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in named}


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], sharded: bool) -> None:
    """Copy a full (unsharded) partial state dict into the model, every rank from its own copy; every name
    must be one of the model's."""
    if sharded:
        result = set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        result = model.load_state_dict(state, strict=False)
    if unexpected := result.unexpected_keys:
        raise ValueError(f"state does not fit the model: unexpected {unexpected[:5]}")


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, sharded: bool) -> dict:
    """Unsharded optimizer state (every rank must call when sharded; complete on rank 0)."""
    if not sharded:
        return optimizer.state_dict()
    return get_optimizer_state_dict(model, optimizer, options=FULL_ON_CPU)


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, sharded: bool) -> None:
    if not sharded:
        optimizer.load_state_dict(state)
        return
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def all_reduce_sum(values: torch.Tensor, sharded: bool) -> torch.Tensor:
    """Sum `values` over the ranks in place (when sharded); under NCCL `values` must be on the rank's GPU."""
    if sharded:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values
