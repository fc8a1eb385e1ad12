"""FSDP2 on one rank (what CPU offload runs on): built on the meta device, loaded shard-wise from safetensors,
offloaded policy and reference, mixed precision through MixedPrecisionPolicy; equal to the plain learner."""

import numpy as np
import psutil
import pytest
import torch
import torch.distributed as dist
from step_batches import batch_from_prompts
from torch.distributed.fsdp import FSDPModule
from torch.distributed.fsdp._fully_shard import _fsdp_param_group
from torch.distributed.tensor import DTensor

from hgpo.config import LearnerConfig
from hgpo.learner.plan import update_plan
from hgpo.learner.worker import Learner
from hgpo.rollout.engines.hf import HFEngine

STATS = ("loss/policy", "loss/entropy", "loss/kl", "learner/grad_norm")


@pytest.fixture(scope="module")
def batch(tiny_model_dir):
    rng = np.random.default_rng(3)
    prompts = [rng.integers(10, 60, size=int(k)).tolist() for k in rng.integers(3, 30, size=10)]
    return batch_from_prompts(HFEngine(tiny_model_dir), prompts, 1.0).with_advantages(rng.normal(size=len(prompts)))


@pytest.fixture
def fsdp_learner():
    """Build a learner that runs FSDP2 alone in this process; the process group is destroyed afterwards."""

    def build(cfg: LearnerConfig, path: str, dtype: str = "float32") -> Learner:
        learner = Learner(cfg, path, dtype, 1.0, seed=0)
        assert learner.fsdp and all(p.device.type == "meta" for p in learner.model.parameters())
        assert learner.init_distributed(*learner.rendezvous_address("127.0.0.1"), timeout_s=60) == "gloo"
        return learner

    yield build
    if dist.is_initialized():
        dist.destroy_process_group()


def test_offloaded_policy_and_reference_match_the_plain_learner(tiny_model_dir, batch, fsdp_learner):
    cfg = dict(lr=1e-2, kl_coef=0.01, micro_batch_tokens=64)
    plain = Learner(LearnerConfig(**cfg), tiny_model_dir, "float32", 1.0, seed=0)
    offloaded = fsdp_learner(LearnerConfig(**cfg, offload=True, ref_offload=True), tiny_model_dir)
    assert offloaded.weights_digest() == plain.weights_digest()  # the shard-wise load is exact
    assert isinstance(offloaded.reference, torch.distributed.fsdp.FSDPModule)
    for _ in range(2):
        a, b = plain.update(batch), offloaded.update(batch)
        for key in STATS:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    assert b["loss/kl"] > 1e-6
    for name, value in plain.state_numpy().items():
        np.testing.assert_allclose(offloaded.state_numpy()[name], value, atol=2e-5, err_msg=name)


def test_sharded_mixed_precision_keeps_float32_shards(tiny_model_dir, batch, fsdp_learner):
    cfg = LearnerConfig(lr=1e-3, num_minibatches=1, offload=True)
    autocast = Learner(LearnerConfig(lr=1e-3, num_minibatches=1), tiny_model_dir, "bfloat16", 1.0, seed=0)
    sharded = fsdp_learner(cfg, tiny_model_dir, "bfloat16")
    assert all(p.to_local().dtype == torch.float32 for p in sharded.model.parameters())
    for _ in range(3):
        a, b = autocast.update(batch), sharded.update(batch)
        # both compute in bfloat16, but autocast keeps norms and the embedding in float32
        assert b["loss/entropy"] == pytest.approx(a["loss/entropy"], rel=2e-2)
    assert all(s["exp_avg"].to_local().dtype == torch.float32 for s in sharded.optimizer.state.values())


def test_the_frozen_reference_reshards_its_root_after_each_forward(tiny_model_dir, batch, fsdp_learner):
    """FSDP2 keeps a root gathered after its forward, for the backward; the reference never runs one, so its
    embeddings and LM head would otherwise stay whole on every rank."""
    learner = fsdp_learner(LearnerConfig(kl_coef=0.01, ref_offload=True), tiny_model_dir)
    learner.recompute_logprobs(batch, np.arange(len(batch)))
    assert all(isinstance(p, DTensor) for p in learner.reference.parameters())  # sharded again
    assert not all(isinstance(p, DTensor) for p in learner.model.parameters())  # the policy's root waits gathered


@pytest.mark.parametrize("every_micro_batch", [False, True])
def test_gradients_are_reduced_once_per_mini_batch(monkeypatch, tiny_model_dir, batch, fsdp_learner, every_micro_batch):
    cfg = LearnerConfig(
        num_minibatches=2, micro_batch_tokens=64, offload=True, grad_sync_every_micro_batch=every_micro_batch
    )
    learner = fsdp_learner(cfg, tiny_model_dir)
    calls = []
    original = _fsdp_param_group.foreach_reduce
    monkeypatch.setattr(_fsdp_param_group, "foreach_reduce", lambda *a, **k: calls.append(1) or original(*a, **k))
    plan = update_plan(
        batch.prompt_ids.lengths + batch.response_ids.lengths, batch.response_ids.lengths, np.arange(len(batch)),
        epochs=cfg.ppo_epochs, num_minibatches=2, token_budget=64, rank=0, world_size=1,
        rng=np.random.default_rng([learner.seed, 0]),
    )  # fmt: skip
    micro_batches = sum(len(m.micro_batches) for m in plan)
    assert micro_batches > len(plan) == 2  # several micro-batches per mini-batch
    learner.update(batch)
    groups = sum(1 for m in learner.model.modules() if isinstance(m, FSDPModule))  # one reduction per group
    assert len(calls) == groups * (micro_batches if every_micro_batch else len(plan))


def test_the_process_group_store_listens_on_the_rank_0_address_only(tiny_model_dir):
    def listening(port):
        return {
            c.laddr.ip for c in psutil.Process().net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port
        }

    learner = Learner(LearnerConfig(offload=True), tiny_model_dir, "float32", 1.0, seed=0)
    address, port = learner.rendezvous_address("127.0.0.1")
    try:
        assert listening(port) == {"127.0.0.1"}  # held from the address until the store takes it over
        assert learner.init_distributed(address, port, timeout_s=60) == "gloo"
        assert listening(port) == {"127.0.0.1"} and learner.listener is None  # the store's, not 0.0.0.0 / ::
    finally:
        dist.destroy_process_group()
