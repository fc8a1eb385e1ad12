"""Every engine keeps the Engine contract and samples what the learner would compute for the same weights."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hgpo.batch import Ragged, StepBatch
from hgpo.config import LearnerConfig
from hgpo.learner.worker import Learner
from hgpo.rollout.engines import Generation, SamplingParams
from hgpo.rollout.engines.vllm import VLLMEngine
from hgpo.weights import load_state


@pytest.fixture(scope="module")
def prompts() -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [rng.integers(10, 35, size=int(n)).tolist() for n in rng.integers(2, 20, size=24)]


@pytest.fixture(scope="module")
def tokenizer(engine_model_dir):
    return AutoTokenizer.from_pretrained(engine_model_dir)


def make_learner(model_dir: str, temperature: float, state=None) -> Learner:
    learner = Learner(LearnerConfig(micro_batch_tokens=512), model_dir, "float32", temperature, seed=0)
    if state is not None:
        load_state(learner.model, state)
    learner.model.eval()
    return learner


def learner_logprobs(learner: Learner, prompts: list[list[int]], gens: list[Generation]) -> list[np.ndarray]:
    """The learner's recomputed logprob of every response token (its own code path, Learner.recompute_logprobs)."""
    n = len(prompts)
    batch = StepBatch(
        group_ids=np.zeros(n, np.int64), traj_ids=np.arange(n), step_ids=np.zeros(n, np.int64),
        state_keys=np.zeros(n, np.uint64), action_keys=np.zeros(n, np.uint64), rewards=np.zeros(n),
        invalid=np.zeros(n, bool), traj_won=np.zeros(n, bool), traj_failed=np.zeros(n, bool),
        prompt_ids=Ragged.from_rows(prompts, np.int32),
        response_ids=Ragged.from_rows([g.token_ids for g in gens], np.int32),
        response_logprobs=Ragged.from_rows([g.logprobs for g in gens], np.float32),
    )  # fmt: skip
    flat, _ = learner.recompute_logprobs(batch, np.arange(n))
    return [flat[batch.response_ids.offsets[i] : batch.response_ids.offsets[i + 1]] for i in range(n)]


def max_gap(learner: Learner, prompts, gens) -> float:
    expected = learner_logprobs(learner, prompts, gens)
    return max(float(np.abs(np.asarray(g.logprobs) - e).max()) for g, e in zip(gens, expected))


@torch.no_grad()
def learner_next_token_logits(learner: Learner, prompt: list[int], response: list[int]) -> torch.Tensor:
    """(len(response), vocab) logits of the learner's forward pass at each response position."""
    logits = learner.model(torch.tensor([prompt + response])).logits[0].float()
    return logits[len(prompt) - 1 : len(prompt) + len(response) - 1]


def greedy(max_tokens: int = 12, stop: tuple[str, ...] = ()) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=stop)


def test_one_output_per_prompt_in_input_order(engine, prompts):
    assert engine.generate([], greedy(), seed=0) == []
    forward = engine.generate(prompts, greedy(), seed=0)
    backward = engine.generate(prompts[::-1], greedy(), seed=0)
    assert len(forward) == len(prompts)
    for a, b in zip(forward, backward[::-1]):
        assert a.token_ids == b.token_ids
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
    alone = engine.generate([prompts[3]], greedy(), seed=0)[0]
    assert alone.token_ids == forward[3].token_ids


def test_finish_reasons_eos_and_length_within_max_tokens(engine, prompts, tokenizer):
    gens = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=1.5), seed=0)
    eos = tokenizer.eos_token_id
    for g in gens:
        assert 1 <= len(g.token_ids) <= 12 and len(g.logprobs) == len(g.token_ids)
        assert eos not in g.token_ids[:-1]  # nothing after the end
        assert g.finish_reason == ("eos" if g.token_ids[-1] == eos else "length")
        assert g.finish_reason == "eos" or len(g.token_ids) == 12
        assert g.finished == (g.finish_reason != "length")
    assert {g.finish_reason for g in gens} == {"eos", "length"}  # the seed gives both: the test sees each case


def test_stop_string_keeps_the_completing_token_and_nothing_after(engine, prompts, tokenizer):
    free = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=1.0), seed=1)
    # a two-token stop string that some row completes with its 4th token (no special tokens: they decode to "")
    row = next(
        i
        for i, g in enumerate(free)
        if len(g.token_ids) > 4
        and not set(g.token_ids[:4]) & set(tokenizer.all_special_ids)
        and tokenizer.decode(g.token_ids[2:4]) not in tokenizer.decode(g.token_ids[:3])
    )
    stop = tokenizer.decode(free[row].token_ids[2:4])
    stopped = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=1.0, stop=(stop,)), seed=1)
    assert stopped[row].token_ids == free[row].token_ids[:4] and stopped[row].finish_reason == "stop"
    for s, f in zip(stopped, free):
        assert s.token_ids == f.token_ids[: len(s.token_ids)]  # the same samples, cut at the stop
        np.testing.assert_allclose(s.logprobs, f.logprobs[: len(s.logprobs)], atol=1e-5)
        text = tokenizer.decode(s.token_ids, skip_special_tokens=True)
        if s.finish_reason == "stop":
            assert stop in text and stop not in tokenizer.decode(s.token_ids[:-1], skip_special_tokens=True)
        else:
            assert stop not in text and s.finish_reason == f.finish_reason


def test_greedy_is_deterministic_and_the_learners_argmax(engine, engine_model_dir, prompts, logprob_tolerance):
    gens = engine.generate(prompts, greedy(), seed=0)
    assert [g.token_ids for g in engine.generate(prompts, greedy(), seed=123)] == [g.token_ids for g in gens]
    learner = make_learner(engine_model_dir, temperature=1.0)  # greedy logprobs are those of temperature 1
    for prompt, g in zip(prompts, gens):
        assert learner_next_token_logits(learner, prompt, g.token_ids).argmax(-1).tolist() == g.token_ids
    assert max_gap(learner, prompts, gens) < logprob_tolerance


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampling_is_reproducible_and_matches_learner_logprobs(
    engine, engine_model_dir, prompts, temperature, logprob_tolerance
):
    params = SamplingParams(max_tokens=12, temperature=temperature)
    gens = engine.generate(prompts, params, seed=7)
    again = engine.generate(prompts, params, seed=7)
    other = engine.generate(prompts, params, seed=8)
    assert [g.token_ids for g in again] == [g.token_ids for g in gens]
    assert [g.token_ids for g in other] != [g.token_ids for g in gens]
    assert max_gap(make_learner(engine_model_dir, temperature), prompts, gens) < logprob_tolerance


def test_batch_larger_than_one_engine_step(engine):
    """6,000 prompt tokens: more than vLLM schedules in one step, so prompts wait or are split across steps."""
    rng = np.random.default_rng(1)
    prompts = [rng.integers(10, 35, size=60).tolist() for _ in range(100)]
    params = SamplingParams(max_tokens=16, temperature=1.0)
    gens = engine.generate(prompts, params, seed=4)
    assert [g.token_ids for g in engine.generate(prompts, params, seed=4)] == [g.token_ids for g in gens]
    if isinstance(engine, VLLMEngine):  # per-prompt seeds: a prompt's sample does not depend on its batch
        assert [g.token_ids for g in engine.generate(prompts[:3], params, seed=4)] == [g.token_ids for g in gens[:3]]


def test_top_p_samples_inside_the_nucleus(engine, engine_model_dir, prompts):
    """hf reports logprobs before the cut (as the learner), vllm after it (renormalised): see base.Generation."""
    gens = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=1.0, top_p=0.3), seed=3)
    learner = make_learner(engine_model_dir, temperature=1.0)
    for prompt, g, full in zip(prompts, gens, learner_logprobs(learner, prompts, gens)):
        probs = torch.softmax(learner_next_token_logits(learner, prompt, g.token_ids), dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        for step, token in enumerate(g.token_ids):  # the token is among the fewest most likely with mass >= 0.3
            rank = int((order[step] == token).nonzero())
            assert sorted_probs[step, :rank].sum() < 0.3 + 1e-5
        assert np.all(np.asarray(g.logprobs) >= full - 1e-4) and np.all(np.asarray(g.logprobs) <= 1e-6)


def perturbed(model_dir: str, keep) -> dict[str, np.ndarray]:
    """Noisy copies of the weights whose names pass `keep`, as the object-store sync ships them."""
    torch.manual_seed(1)
    state = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    return {k: (v + 0.1 * torch.randn_like(v)).numpy() for k, v in state.items() if keep(k)}


def initial_state(model_dir: str) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()}


@pytest.mark.parametrize(
    "keep",
    [
        pytest.param(lambda name: True, id="full"),
        # a LoRA-style subset: whole attention and MLP blocks of layer 0 only
        pytest.param(lambda name: name.startswith("model.layers.0.") and "proj" in name, id="partial"),
    ],
)
def test_load_weights_changes_outputs_and_version(engine, engine_model_dir, prompts, keep, logprob_tolerance):
    before = engine.generate(prompts, greedy(), seed=0)
    state = perturbed(engine_model_dir, keep)
    try:
        engine.load_weights(state, version=5)
        assert engine.version == 5
        after = engine.generate(prompts, greedy(), seed=0)
        assert [g.token_ids for g in after] != [g.token_ids for g in before]
        learner = make_learner(engine_model_dir, temperature=1.0, state=state)
        assert max_gap(learner, prompts, after) < logprob_tolerance
        sampled = engine.generate(prompts, SamplingParams(max_tokens=12, temperature=0.8), seed=2)
        learner = make_learner(engine_model_dir, temperature=0.8, state=state)
        assert max_gap(learner, prompts, sampled) < logprob_tolerance
    finally:
        engine.load_weights(initial_state(engine_model_dir), version=0)
    assert [g.token_ids for g in engine.generate(prompts, greedy(), seed=0)] == [g.token_ids for g in before]


def test_sleep_and_wake_up_keep_or_update_the_weights(engine, engine_model_dir, prompts):
    before = engine.generate(prompts, greedy(), seed=0)
    engine.sleep()
    engine.wake_up()
    after = engine.generate(prompts, greedy(), seed=0)
    assert [g.token_ids for g in after] == [g.token_ids for g in before]
    np.testing.assert_allclose(
        np.concatenate([g.logprobs for g in after]), np.concatenate([g.logprobs for g in before]), atol=1e-5
    )
    engine.sleep()  # weights that arrive while asleep are the ones used after waking
    try:
        engine.load_weights(perturbed(engine_model_dir, lambda name: True), version=1)
        engine.wake_up()
        assert [g.token_ids for g in engine.generate(prompts, greedy(), seed=0)] != [g.token_ids for g in before]
    finally:
        engine.wake_up()
        engine.load_weights(initial_state(engine_model_dir), version=0)


def test_engines_import_without_vllm():
    code = "import sys, hgpo.rollout.engines, hgpo.rollout.engines.vllm; print('vllm' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "False"
