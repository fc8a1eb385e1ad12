"""EnvCalls: run environment resets and steps concurrently on a thread pool, each with a timeout.

A call that raises or runs past its timeout comes back as an exception object in its slot, so the
caller fails that one trajectory and goes on. A timed-out call cannot be stopped (Python threads
cannot be killed): its thread is written off, and when every thread of the pool is held by such calls
a fresh pool takes over, so one stuck environment never stalls the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

_POLL_S = 0.05


class EnvCallTimeout(TimeoutError):
    """An environment call ran past rollout.env_step_timeout_s."""


class EnvCalls:
    def __init__(self, threads: int, timeout_s: float):
        self.threads, self.timeout_s = threads, timeout_s
        self._pool = self._new_pool()
        self._stuck = 0  # threads of the current pool held by calls that timed out

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.threads, thread_name_prefix="env")

    def run(self, calls: Sequence[Callable[[], Any]]) -> list[Any]:
        """Results in input order; a call that raised or timed out gives its exception instead."""
        results: list[Any] = [None] * len(calls)
        started: list[float | None] = [None] * len(calls)

        def timed(i: int) -> Any:
            started[i] = time.monotonic()
            return calls[i]()

        owner: dict[Future, int] = {self._pool.submit(timed, i): i for i in range(len(calls))}
        pending = set(owner)
        while pending:
            done, pending = wait(pending, timeout=min(_POLL_S, self.timeout_s), return_when=FIRST_COMPLETED)
            for future in done:
                error = future.exception()
                results[owner[future]] = error if error is not None else future.result()
            now = time.monotonic()
            for future in list(pending):
                i = owner[future]
                if started[i] is not None and now - started[i] > self.timeout_s:
                    results[i] = EnvCallTimeout(f"environment call took longer than {self.timeout_s}s")
                    pending.discard(future)
                    self._stuck += 1
            if self._stuck >= self.threads:  # every thread is stuck: move the queued calls to a fresh pool
                old, self._pool, self._stuck = self._pool, self._new_pool(), 0
                for future in [f for f in pending if f.cancel()]:
                    pending.discard(future)
                    i = owner.pop(future)
                    replacement = self._pool.submit(timed, i)
                    owner[replacement] = i
                    pending.add(replacement)
                old.shutdown(wait=False)
        return results

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
