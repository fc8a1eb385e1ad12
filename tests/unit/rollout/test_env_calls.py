"""EnvCalls: concurrent environment calls with per-call timeouts."""

import threading
import time

import pytest

from hgpo.rollout.env_calls import EnvCalls, EnvCallTimeout


def test_results_come_back_in_order_with_errors_in_their_slot():
    calls = EnvCalls(threads=3, timeout_s=5.0)

    def boom():
        raise ValueError("bad action")

    results = calls.run([lambda: 1, boom, lambda: "three"])
    assert results[0] == 1 and results[2] == "three"
    assert isinstance(results[1], ValueError) and "bad action" in str(results[1])
    calls.close()


def test_calls_run_concurrently():
    calls = EnvCalls(threads=4, timeout_s=5.0)
    start = time.monotonic()
    calls.run([lambda: time.sleep(0.3)] * 4)
    assert time.monotonic() - start < 0.3 * 2  # one after another would take 1.2 s
    calls.close()


def test_a_hung_call_times_out_and_the_others_finish():
    release = threading.Event()
    calls = EnvCalls(threads=2, timeout_s=0.3)
    start = time.monotonic()
    results = calls.run([lambda: release.wait(10), lambda: "ok", lambda: "ok too"])
    elapsed = time.monotonic() - start
    release.set()
    assert isinstance(results[0], EnvCallTimeout) and results[1:] == ["ok", "ok too"]
    assert elapsed < 2.0
    calls.close()


def test_queued_calls_move_to_a_fresh_pool_when_every_thread_is_stuck():
    release = threading.Event()
    calls = EnvCalls(threads=1, timeout_s=0.2)
    start = time.monotonic()
    results = calls.run([lambda: release.wait(10), lambda: "queued behind a hung call"])
    assert isinstance(results[0], EnvCallTimeout) and results[1] == "queued behind a hung call"
    assert time.monotonic() - start < 2.0
    assert calls.run([lambda: "pool still usable"]) == ["pool still usable"]
    release.set()
    calls.close()


@pytest.mark.parametrize("threads", [1, 8])
def test_timeout_is_per_call_not_per_batch(threads):
    calls = EnvCalls(threads=threads, timeout_s=0.25)
    results = calls.run([lambda: time.sleep(0.1)] * 6)  # 0.6 s one after another, each call well within 0.25 s
    assert not any(isinstance(r, BaseException) for r in results)
    calls.close()
