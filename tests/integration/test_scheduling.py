"""The schedulers end to end on a local Ray: asynchronous rollout (bounded staleness, a worker killed
mid-flight, resume with groups in flight) and the colocated placement (the same run as the separate one)."""

import json
from itertools import chain

import numpy as np
import pytest
import ray
from jobs import QUIET_JOB, make_trainer
from safetensors.numpy import load_file

pytestmark = pytest.mark.integration
SMALL = [
    "rollout.num_groups=4", "rollout.group_size=2", "rollout.num_workers=2", "rollout.max_response_tokens=8",
    "env.max_steps=3", "learner.num_minibatches=1", "tracking.wandb=disabled", "trainer.sync_timeout_s=600",
    "learner.torch_threads=1",
    *QUIET_JOB,
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def trainer(run_dir, model_dir, overrides):
    return make_trainer(run_dir, model_dir, [*SMALL, *overrides])


def test_async_rollout_keeps_its_bound_survives_a_killed_worker_and_resumes_with_groups_in_flight(
    tmp_path, tiny_model_dir, driver_never_fetches_batches
):
    # Every third episode of a worker process kills that process at its second step, once.
    faulty = ["env=faulty", "env.kwargs.mode=exit", "env.kwargs.every=3", "env.kwargs.at_step=1",
              f"env.kwargs.once_file={tmp_path / 'exited'}"]  # fmt: skip
    k1 = ["trainer.max_staleness=1", "trainer.checkpoint_every=1", "trainer.resume=auto", *faulty]
    run_dir = tmp_path / "run"
    first = trainer(run_dir, tiny_model_dir, [*k1, "trainer.iterations=3"])
    history = first.run()
    assert (tmp_path / "exited").exists(), "no worker died: the test did not test a restart"
    state = json.loads((run_dir / "checkpoints" / "iter_000002" / "trainer_state.json").read_text())
    pending = state["scheduler"]["pending_groups"]
    assert pending, "nothing was in flight at the checkpoint: the resume below tests nothing"
    second = trainer(run_dir, tiny_model_dir, [*k1, "trainer.iterations=5"])
    history = second.run()
    assert [h["iteration"] for h in history] == [0, 1, 2, 3, 4]
    assert history[2]["rollout/worker_restarts"] == 1.0
    for h in history:
        assert h["sched/staleness_max"] <= 1.0 and np.isfinite(h["loss/policy"])
        assert 0.0 <= h["time/learner_idle_share"] <= 1.0 and 0.0 <= h["time/generator_idle_share"] <= 1.0
        assert {"sched/groups_waiting", "sched/versions_in_flight", "learner/stale_token_share"} <= h.keys()
        held = [h[f"rollout/weight_version/rollout-{i}"] for i in (0, 1)]  # what each worker holds
        assert all(v == int(v) and 0 <= v <= h["rollout/weight_version"] for v in held), (h["iteration"], held)
    assert max(history[-1][f"rollout/weight_version/rollout-{i}"] for i in (0, 1)) > 0  # new weights arrived
    assert max(h["sched/staleness_max"] for h in history) == 1.0  # the rollout did overlap the update
    assert max(h["learner/stale_token_share"] for h in history) > 0.0  # and the learner saw lagging rows
    # Nothing lost, nothing twice: every group issued is consumed exactly once or still open at the end; the
    # groups open at the checkpoint were replayed (same seeds) and consumed after the resume.
    before, after = first.scheduler.consumed[:3], second.scheduler.consumed
    consumed = list(chain(*before, *after))
    assert all(len(batch) == 4 for batch in before + after)
    assert len(consumed) == len(set(consumed)) == 20
    assert set(pending) <= set(chain(*after)) | set(second.scheduler.state()["pending_groups"])
    assert set(consumed) | set(second.scheduler.state()["pending_groups"]) == set(range(second.scheduler.next_group))


def test_colocated_placement_gives_the_separate_run(tmp_path, tiny_model_dir):
    runs = {}
    for placement in ("separate", "colocated"):
        t = trainer(tmp_path / placement, tiny_model_dir, [f"trainer.placement={placement}", "trainer.iterations=2"])
        if placement == "colocated":
            assert list(t.placement.groups) == ["colocated"]  # learner and workers share one bundle
        runs[placement] = t.run()
    for separate, colocated in zip(runs["separate"], runs["colocated"]):
        timing = ("time/", "perf/", "learner/peak", "rollout/worker_idle", "rollout/generate_sh", "rollout/env_sh")
        keys = [k for k in separate if not k.startswith(timing)]
        assert keys and {k: separate[k] for k in keys} == {k: colocated[k] for k in keys}
    weights = [load_file(tmp_path / p / "checkpoints" / "iter_000001" / "policy" / "model.safetensors") for p in runs]
    for name, value in weights[0].items():
        np.testing.assert_array_equal(weights[1][name], value, err_msg=name)
