"""Weight sync by broadcast from learner rank 0 to every generator (gloo on CPU, NCCL on GPUs), in buckets."""

from __future__ import annotations

import time
from collections.abc import Sequence

from hgpo.learner.group import LearnerGroup
from hgpo.sync.base import check_versions, wait_for_workers


class CollectiveSync:
    """Sets up the broadcast group once (learner rank 0 = rank 0, generator i = rank i+1), then pushes."""

    def __init__(
        self, learner: LearnerGroup, workers: Sequence, names: Sequence[str], timeout_s: float, bucket_bytes: int
    ):
        self.learner, self.workers, self.names = learner, list(workers), list(names)
        self.timeout_s, self.bucket_bytes = timeout_s, bucket_bytes
        self._setup()

    def _setup(self) -> None:
        """Form the broadcast group (a fresh rendezvous each time, so it can be rebuilt after a restart)."""
        learner, timeout_s = self.learner, self.timeout_s
        sender = learner.actors[0]
        (address, port), layout = learner.wait(
            [sender.rendezvous_address.remote(), sender.weight_layout.remote()], "broadcast setup"
        )
        world_size = 1 + len(self.workers)
        joins = [
            w.join_broadcast.remote(address, port, rank, world_size, timeout_s, layout)
            for rank, w in enumerate(self.workers, start=1)
        ]
        sender_join = sender.join_broadcast.remote(address, port, world_size, timeout_s)
        wait_for_workers(joins, self.names, "weight broadcast group setup", timeout_s)
        learner.wait([sender_join], "weight broadcast group setup", timeout_s)

    def recover(self, worker: int, version: int) -> dict[str, float]:
        """A restarted worker left the old group: every member joins a new one, then all receive `version`."""
        start = time.perf_counter()
        self._setup()
        return self.push(version) | {"time/recover_s": time.perf_counter() - start}

    def push(self, version: int) -> dict[str, float]:
        start = time.perf_counter()
        sends = [a.broadcast_weights.remote(version, self.bucket_bytes) for a in self.learner.actors]
        acks = [w.receive_weights.remote(version, self.bucket_bytes) for w in self.workers]
        what = f"weight broadcast v{version} (trainer.sync_timeout_s)"
        check_versions(wait_for_workers(acks, self.names, what, self.timeout_s), self.names, version)
        bytes_sent = self.learner.wait(sends, f"weight broadcast v{version}", self.timeout_s)[0]
        return {
            "sync/version": float(version),
            "sync/bytes": float(bytes_sent),
            "time/sync_s": time.perf_counter() - start,
        }
