"""The rollout workers as the schedulers see them: the actors, their weight version, restarts and episode groups."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import ray

from hgpo.rollout.loop import EpisodeSpec
from hgpo.sync.base import WeightSync

log = logging.getLogger(__name__)


def group_seed(seed: int, iteration: int, group: int) -> int:
    """Environment seed of one group, from (base seed, iteration, group): a resumed run replays the same tasks."""
    return int(np.random.SeedSequence([seed, iteration, group]).generate_state(1)[0]) % 2**31


def group_specs(env_seed: int, group_id: int, group_size: int) -> list[EpisodeSpec]:
    """The episodes of one group: `group_size` trajectories that reset to the same seed."""
    return [EpisodeSpec(group_id=group_id, traj_id=group_id * group_size + j, seed=env_seed) for j in range(group_size)]


class WorkerPool:
    """RolloutWorker actors, the weight version they hold (or will hold once their queued loads ran), and the
    restart of a worker whose process died (bounded by trainer.max_worker_restarts over the whole run)."""

    def __init__(
        self,
        workers: Sequence,
        names: Sequence[str],
        weight_sync: WeightSync | None,
        max_restarts: int,
        timeout_s: float,
    ):
        """`weight_sync`: set (or replaced, after a learner restart) by the Trainer; `timeout_s`: how long a
        worker may take to start its engine (trainer.startup_timeout_s)."""
        self.workers, self.names, self.weight_sync = list(workers), list(names), weight_sync
        self.max_restarts, self.timeout_s = max_restarts, timeout_s
        self.version = 0
        self.held = [0] * len(self.workers)
        """The version each worker is known to hold: after a push or a restart, or when it acknowledged a load."""
        self.restarts = 0

    def __len__(self) -> int:
        return len(self.workers)

    def launch(self, i: int, specs: list[EpisodeSpec], seed: int) -> tuple[ray.ObjectRef, ray.ObjectRef]:
        """Worker `i` plays `specs` in one call; (batch ref, stats ref): two objects, so the stats come alone."""
        return self.workers[i].rollout.options(num_returns=2).remote(specs, seed=seed)

    def stream(self, i: int, specs: list[EpisodeSpec], seed: int):
        """Worker `i` plays `specs` and hands over every group as it ends: a generator of refs, two per group
        (its StepBatch, then its stats)."""
        return self.workers[i].rollout_groups.remote(specs, seed=seed)

    def push(self, version: int) -> dict[str, float]:
        """Every worker holds `version` when this returns (trainer.sync_timeout_s, or TimeoutError)."""
        stats = self.weight_sync.push(version)
        self.version, self.held = version, [version] * len(self.workers)
        return stats

    def send(self, version: int) -> tuple[dict[str, float], list[ray.ObjectRef]]:
        """Start a push without waiting: each worker loads `version` after the call it is running; returns the
        sync metrics and one ack per worker (the version it then holds)."""
        stats, acks = self.weight_sync.send(version)
        self.version = version
        return stats, acks

    def restart(self, i: int, err: Exception, what: str) -> None:
        """Wait for Ray to restart worker `i` after `err` and bring it to the current version."""
        self.restarts += 1
        name = self.names[i]
        if self.restarts > self.max_restarts:
            raise RuntimeError(
                f"{what}: {name} died again and trainer.max_worker_restarts={self.max_restarts} restarts are used "
                f"up; last error: {err}"
            ) from err
        log.warning("%s died in %s (%s); restarting it", name, what, type(err).__name__)
        self.wait_until_alive(i)
        self.weight_sync.recover(i, self.version)
        self.held[i] = self.version
        log.info("%s restarted at weight version %d", name, self.version)

    def wait_until_alive(self, i: int) -> None:
        """Wait until worker `i` has started its engine (the first time, or after Ray restarted it: calls fail
        with ActorUnavailableError meanwhile), at most trainer.startup_timeout_s."""
        deadline = time.perf_counter() + self.timeout_s
        while True:
            try:
                remaining = max(deadline - time.perf_counter(), 0.0)
                ray.get(self.workers[i].get_version.remote(), timeout=remaining)
                return
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                if time.perf_counter() > deadline:
                    raise TimeoutError(
                        f"{self.names[i]} did not start its engine within trainer.startup_timeout_s="
                        f"{self.timeout_s}s; see its log"
                    ) from None
                time.sleep(0.2)
