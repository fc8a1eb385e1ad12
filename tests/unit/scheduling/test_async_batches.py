"""AsynchronousScheduler's bookkeeping without Ray: which groups it issues under the staleness bound, with which
seeds, and which finished groups make up an update's batch (a slow group delays only itself)."""

import pytest

from hgpo.config import Config, RolloutConfig, TrainerConfig
from hgpo.scheduling.asynchronous import AsynchronousScheduler, _Group
from hgpo.scheduling.workers import group_seed

N = 4  # rollout.num_groups
STATS = {
    "rollout/trajectories": 2.0, "rollout/won_trajectories": 1.0, "rollout/failed_trajectories": 0.0,
    "rollout/timed_out_trajectories": 0.0, "rollout/turns": 4.0, "rollout/trimmed_turns": 0.0,
    "rollout/truncated_turns": 0.0, "rollout/prompt_tokens": 40.0, "rollout/padded_prompt_tokens": 40.0,
    "rollout/worker_s": 1.0, "rollout/generate_s": 0.5, "rollout/env_s": 0.5, "rollout/rows": 4.0,
    "rollout/trajectories_with_rows": 2.0, "rollout/reward_sum": 10.0, "rollout/invalid_rows": 0.0,
    "rollout/row_prompt_tokens": 40.0, "rollout/row_prompt_tokens_max": 12.0, "rollout/generated_tokens": 8.0,
}  # fmt: skip


class FakePool:
    """The two workers as the scheduler sees them; `stream` records each call instead of starting it."""

    def __init__(self):
        self.version, self.restarts, self.names, self.calls = 0, 0, ["rollout-0", "rollout-1"], []
        self.held = [0, 0]  # the version each worker is known to hold (WorkerPool.held)

    def __len__(self) -> int:
        return 2

    def stream(self, i, specs, seed):
        self.calls.append((i, specs))
        return object()


def scheduler(k: int, state: dict | None = None) -> AsynchronousScheduler:
    cfg = Config(
        rollout=RolloutConfig(num_groups=N, num_workers=2, group_size=2), trainer=TrainerConfig(max_staleness=k)
    )
    return AsynchronousScheduler(cfg, learner=None, pool=FakePool(), state=state or {})


def issued(s: AsynchronousScheduler) -> list[list[int]]:
    """Group numbers of each call issued since the last look, and let those calls end."""
    calls = [sorted({spec.group_id for spec in specs}) for _, specs in s.pool.calls]
    s.pool.calls.clear()
    s.calls.clear()
    return calls


@pytest.mark.parametrize("k", [1, 2])
def test_issuing_stops_at_the_bound_and_resumes_with_each_new_version(k):
    s = scheduler(k)
    s._dispatch()
    assert issued(s) == [[0, 1], [2, 3]]  # N / num_workers groups per call
    for _ in range(k):
        s._dispatch()
        issued(s)
    s._dispatch()  # version 0 may start groups n < (0 + k + 1) N, and all of them are out
    assert issued(s) == [] and s.next_group == (k + 1) * N
    s.pool.version = 1
    s._dispatch()
    assert issued(s) == [[(k + 1) * N, (k + 1) * N + 1], [(k + 1) * N + 2, (k + 1) * N + 3]]
    assert {g.version for g in s.open.values()} == {0, 1}


def test_group_n_plays_the_synchronous_loops_task_and_replays_come_first():
    s = scheduler(1, {"next_group": 7, "pending_groups": [5, 6]})  # resumed with 5 and 6 in flight
    s._dispatch()
    calls = s.pool.calls
    # worker 0 replays both; worker 1 may take only group 7: (0 + 1 + 1) * N = 8 bounds version 0
    assert [sorted({spec.group_id for spec in specs}) for _, specs in calls] == [[5, 6], [7]]
    assert s.next_group == 8
    specs = calls[0][1]
    assert [spec.seed for spec in specs] == [group_seed(0, 1, 1)] * 2 + [group_seed(0, 1, 2)] * 2
    assert [spec.traj_id for spec in specs] == [10, 11, 12, 13]  # group_id * group_size + j


def finished(n: int, version: int) -> _Group:
    return _Group(n, version, batch_ref=f"rows-{n}", stats=dict(STATS))


def test_a_batch_takes_the_due_groups_and_the_oldest_others_while_a_slow_group_plays_on():
    s = scheduler(1)
    s.next_group = 12
    # update 2 (the learner holds version 2): groups of version <= 1 are due; group 8 (version 2) is still playing
    groups = [finished(4, 1), finished(5, 1), finished(9, 2), finished(10, 2), finished(11, 2), _Group(8, 2)]
    s.open = {g.n: g for g in groups}
    s.pool.held = [2, 1]  # rollout-1 has not acknowledged version 2 yet
    batch = s.next_batch(2)
    assert batch.group_ids == [4, 5, 9, 10] and batch.refs == ["rows-4", "rows-5", "rows-9", "rows-10"]
    assert batch.metrics["sched/staleness_max"] == 1.0 and batch.metrics["sched/staleness_mean"] == 0.5
    assert batch.metrics["sched/groups_waiting"] == 1.0  # group 11: finished, left for the next update
    assert [batch.metrics[f"rollout/weight_version/rollout-{i}"] for i in (0, 1)] == [2.0, 1.0]
    assert sorted(s.open) == [8, 11] and s.consumed == [[4, 5, 9, 10]]
    assert s.state() == {"next_group": 12, "pending_groups": [8, 11]}


def test_a_due_group_still_playing_holds_the_update_back():
    s = scheduler(1)
    groups = [finished(n, 2) for n in (9, 10, 11, 12)] + [_Group(7, 1)]  # group 7, version 1, is due at update 2
    s.open = {g.n: g for g in groups}
    assert not s._batch_ready(2)
    assert s._batch_ready(1)  # for update 1 it is not due yet
    s.open[7] = finished(7, 1)
    assert s._batch_ready(2)
