"""A broadcast group from learner rank 0 to the generators, outside the learners' own process group.

Built directly on a TCPStore (gloo on CPU, NCCL on GPUs), so neither side needs torch.distributed's
default group: learner ranks keep theirs for FSDP, generators (vLLM or transformers) have none.
Weights travel as raw bytes in buckets of `bucket_bytes`, in the order of a layout that both sides
agree on before the first transfer; a header with the version and the byte count comes first, so a
receiver with another layout fails with a clear error instead of reading garbage.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import torch
import torch.distributed as dist

from hgpo.weights import nbytes

Layout = list[tuple[str, tuple[int, ...], str]]  # (name, shape, dtype name) in transfer order


def layout_of(state: Mapping[str, torch.Tensor]) -> Layout:
    return [(name, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in sorted(state.items())]


def buckets(layout: Layout, bucket_bytes: int) -> list[Layout]:
    """Consecutive runs of the layout of at most `bucket_bytes` each (a larger tensor goes alone)."""
    out, current, size = [], [], 0
    for entry in layout:
        n = nbytes(entry[1], entry[2])
        if current and size + n > bucket_bytes:
            out.append(current)
            current, size = [], 0
        current.append(entry)
        size += n
    if current:
        out.append(current)
    return out


class BroadcastGroup:
    """Rank 0 sends, ranks 1..world_size-1 receive. Every collective times out after `timeout_s`."""

    def __init__(self, address: str, port: int, rank: int, world_size: int, timeout_s: float, device: str = "cpu"):
        timeout = timedelta(seconds=timeout_s)
        store = dist.TCPStore(address, port, world_size, rank == 0, timeout)
        if device == "cuda":
            self.group = dist.ProcessGroupNCCL(store, rank, world_size)
        else:
            self.group = dist.ProcessGroupGloo(store, rank, world_size, timeout)
        self.rank, self.device, self.timeout = rank, device, timeout

    def _broadcast(self, tensor: torch.Tensor) -> None:
        options = dist.BroadcastOptions()
        options.rootRank = 0
        options.timeout = self.timeout
        self.group.broadcast([tensor], options).wait()

    def send(self, state: Mapping[str, torch.Tensor], layout: Layout, version: int, bucket_bytes: int) -> int:
        """Broadcast `state` (rank 0); return the bytes sent."""
        total = sum(nbytes(shape, dtype) for _, shape, dtype in layout)
        self._broadcast(torch.tensor([version, len(layout), total], dtype=torch.int64, device=self.device))
        for bucket in buckets(layout, bucket_bytes):
            flat = torch.cat([state[name].detach().reshape(-1).view(torch.uint8) for name, _, _ in bucket])
            self._broadcast(flat.to(self.device))
        return total

    def receive(self, layout: Layout, version: int, bucket_bytes: int) -> dict[str, torch.Tensor]:
        """Receive one broadcast laid out as `layout`; raise if the sender's version or size differ."""
        header = torch.zeros(3, dtype=torch.int64, device=self.device)
        self._broadcast(header)
        sent_version, count, total = (int(x) for x in header.tolist())
        expected = sum(nbytes(shape, dtype) for _, shape, dtype in layout)
        if (sent_version, count, total) != (version, len(layout), expected):
            raise RuntimeError(
                f"weight broadcast: sender sent v{sent_version} with {count} tensors / {total} bytes, this receiver "
                f"expects v{version} with {len(layout)} tensors / {expected} bytes (different model?)"
            )
        state = {}
        for bucket in buckets(layout, bucket_bytes):
            sizes = [nbytes(shape, dtype) for _, shape, dtype in bucket]
            flat = torch.empty(sum(sizes), dtype=torch.uint8, device=self.device)
            self._broadcast(flat)
            for (name, shape, dtype), part in zip(bucket, torch.split(flat, sizes)):
                state[name] = part.view(getattr(torch, dtype)).reshape(shape)
        return state
