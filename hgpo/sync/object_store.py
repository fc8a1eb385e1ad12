"""Weight sync through Ray's object store: one put by the learner, one zero-copy read per generator."""

from __future__ import annotations

import time
from collections.abc import Sequence

import ray

from hgpo.learner.group import LearnerGroup


def push_weights(
    learner: LearnerGroup, workers: Sequence, names: Sequence[str], version: int, timeout_s: float
) -> dict[str, float]:
    """Send the learner's current weights to every worker as `version` and wait for each to hold it.

    `workers` are RolloutWorker actor handles. Raises TimeoutError naming the workers (or learner ranks)
    that did not answer within `timeout_s`, and RuntimeError if a worker reports another version.
    """
    start = time.perf_counter()
    state_ref, gather_refs = learner.export_weights()  # stays in the object store; workers map it
    acks = [w.load_weights.remote(state_ref, version) for w in workers]
    learner.wait(gather_refs, f"weight export v{version}", timeout_s)
    done, pending = ray.wait(acks, num_returns=len(acks), timeout=timeout_s)
    if pending:
        stuck = [names[i] for i, ack in enumerate(acks) if ack in pending]
        raise TimeoutError(
            f"weight sync v{version}: no ack from {stuck} after {timeout_s}s (trainer.sync_timeout_s); "
            "check those workers' logs"
        )
    versions = ray.get(acks, timeout=timeout_s)
    wrong = {names[i]: v for i, v in enumerate(versions) if v != version}
    if wrong:
        raise RuntimeError(f"weight sync v{version}: workers report other versions {wrong}")
    return {"sync/version": float(version), "time/sync_s": time.perf_counter() - start}
