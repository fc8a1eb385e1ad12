"""The warm start of any model.path: SFT on expert episodes through the rollout's prompt, cached, LoRA merged.

The base here is the session's random tiny model used as a model directory (a real pretrained model is
measured by the `slow` test in tests/integration/test_smollm2_warm_start.py and in docs/results.md)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from envs import make_env
from hgpo.config import Config, EnvConfig, WarmStartConfig
from hgpo.model_source import resolve_model_path
from hgpo.rollout.engines import SamplingParams
from hgpo.rollout.engines.hf import HFEngine
from hgpo.rollout.env_calls import EnvCalls
from hgpo.rollout.loop import EpisodeSpec, run_episodes
from hgpo.rollout.prompts import encode_example
from hgpo.train import validate_overrides
from hgpo.warm_start import SOLVER_SEED_BASE, prepare_policy, solver_examples

TWX_PARAMS = "numLocations=3,numIngredients=2,numDistractorItems=2,includeDoors=0,limitInventorySize=0"
FAST = [
    "env.kwargs.num_rooms=2", "env.max_steps=6", "model.warm_start.enabled=true", "model.warm_start.episodes=40",
    "model.warm_start.epochs=8", "model.warm_start.batch_size=8", "rollout.max_response_tokens=24",
]  # fmt: skip


def invalid_rate(model_dir: str, cfg: Config, episodes: int = 12) -> float:
    """Share of invalid answers over `episodes` greedy KeyRoom episodes (held-out seeds), as the rollout parses."""
    envs = [make_env(cfg.env.name, **cfg.env.kwargs) for _ in range(episodes)]
    specs = [EpisodeSpec(group_id=i, traj_id=i, seed=1000 + i) for i in range(episodes)]
    params = SamplingParams(max_tokens=cfg.rollout.max_response_tokens, temperature=0.0, stop=cfg.rollout.stop)
    batch, _, _ = run_episodes(
        envs, specs, HFEngine(model_dir), AutoTokenizer.from_pretrained(model_dir),
        history_length=cfg.env.history_length, max_steps=cfg.env.max_steps, params=params,
        max_prompt_tokens=cfg.rollout.max_prompt_tokens, seed=0, env_calls=EnvCalls(4, 30.0),
        response_format=cfg.rollout.format,
    )  # fmt: skip
    return float(batch.invalid.mean())


def warm_start(tmp_path, model_dir: str, *overrides: str) -> tuple[Config, str]:
    cfg = validate_overrides([*FAST, f"model.path={model_dir}", f"model.cache_dir={tmp_path}", *overrides])
    source = resolve_model_path(model_dir, hub_cache=str(tmp_path), offline=True)
    path = prepare_policy(cfg, source)
    assert Path(path).parent == tmp_path and Path(path).name.startswith("warm-keyroom-")
    assert prepare_policy(cfg, source) == path  # cached: a second run trains nothing
    return cfg, path


def test_warm_start_of_a_model_path_lowers_the_invalid_rate(tmp_path, tiny_model_dir):
    cfg, path = warm_start(tmp_path, tiny_model_dir, "model.warm_start.lr=1e-2")
    assert json.loads((Path(path) / "recipe.json").read_text())["base"].startswith("dir:")
    before, after = invalid_rate(tiny_model_dir, cfg), invalid_rate(path, cfg)
    assert before > 0.9 and after < 0.3, (before, after)


def response_nll(model_dir: str, cfg: Config) -> float:
    """Mean negative log-likelihood of the warm start's own responses (a few expert examples) under a model."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    nlls = []
    for message, response in solver_examples(cfg.env, cfg.model.warm_start, cfg.trainer.seed)[:16]:
        prompt, answer = encode_example(tokenizer, message, response)
        labels = torch.tensor([[-100] * len(prompt) + answer])
        with torch.no_grad():
            nlls.append(model(input_ids=torch.tensor([prompt + answer]), labels=labels).loss.item())
    return float(np.mean(nlls))


def test_lora_warm_start_trains_an_adapter_and_merges_it(tmp_path, tiny_model_dir):
    # Only an adapter trains. (It cannot make this random model answer well: the model's 0.02-scale tied
    # embeddings cap every logit near 0.6 and only full fine-tuning grows them; SmolLM2 is measured with LoRA.)
    cfg, path = warm_start(tmp_path, tiny_model_dir, "learner.lora.rank=8", "model.warm_start.lr=3e-2")
    recipe = json.loads((Path(path) / "recipe.json").read_text())
    assert recipe["lora"] == {"rank": 8, "alpha": 32.0, "target_modules": []}
    assert not list(Path(path).glob("adapter*"))  # merged: a plain model directory
    base, tuned = load_file(Path(tiny_model_dir) / "model.safetensors"), load_file(Path(path) / "model.safetensors")
    assert set(base) == set(tuned)
    changed = {name for name in base if not np.array_equal(base[name], tuned[name])}
    assert "model.layers.0.self_attn.q_proj.weight" in changed
    assert all(name.endswith("proj.weight") for name in changed)  # embeddings and norms stay the base's
    assert response_nll(path, cfg) < response_nll(tiny_model_dir, cfg) - 0.1


def test_warm_start_off_uses_model_path_as_is(tmp_path, tiny_model_dir):
    cfg = validate_overrides([f"model.path={tiny_model_dir}", f"model.cache_dir={tmp_path}"])
    source = resolve_model_path(tiny_model_dir, hub_cache=str(tmp_path), offline=True)
    assert prepare_policy(cfg, source) == source.path and not list(tmp_path.iterdir())


def test_tiny_model_without_warm_start_is_built_untrained(tmp_path):
    overrides = ["model.warm_start.enabled=false", "model.warm_start.episodes=5", f"model.cache_dir={tmp_path}"]
    path = prepare_policy(validate_overrides(overrides), None)
    assert Path(path).name.startswith("tiny-keyroom-")
    weights = load_file(Path(path) / "model.safetensors")
    assert np.isfinite(weights["model.embed_tokens.weight"]).all()


def recorded_actions(examples: list[tuple[str, str]]) -> list[str]:
    return [response.split("<action>")[1].split("</action>")[0].strip() for _, response in examples]


@pytest.mark.skipif(shutil.which("java") is None, reason="TextWorldExpress needs Java 17+ on PATH")
def test_noisy_expert_episodes_go_on_after_a_random_action_leaves_the_gold_path():
    # TextWorldExpress's expert follows a gold sequence and has no action once a random one left it.
    env_cfg = EnvConfig(name="textworld_express", kwargs={"game_params": TWX_PARAMS}, history_length=2, max_steps=8)
    examples = solver_examples(env_cfg, WarmStartConfig(episodes=3, epsilon=0.5), seed=0)
    assert len(examples) > 3 * 2  # episodes did not stop at their first random action
    assert all("Admissible actions: " in message for message, _ in examples)


@pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java 17+ on PATH")
def test_without_an_admissible_list_the_expert_is_recorded():
    # ScienceWorld lists no admissible actions: nothing to draw a random action from, so even epsilon=1 records
    # the gold path, and the prompts show no list (as in the rollout).
    env_cfg = EnvConfig(name="scienceworld", kwargs={"task_names": ["find-plant"]}, history_length=2, max_steps=4)
    examples = solver_examples(env_cfg, WarmStartConfig(episodes=1, epsilon=1.0), seed=0)
    env = make_env("scienceworld", task_names=["find-plant"])
    try:
        env.reset(SOLVER_SEED_BASE)
        gold = []
        for _ in range(4):
            gold.append(env.expert_action())
            env.step(gold[-1])
    finally:
        env.close()
    assert recorded_actions(examples) == gold
    assert not any("Admissible actions" in message for message, _ in examples)


class NoExpertNoList:
    """Like WebShop's search page without a server: no admissible list and no expert."""

    task_description = "Find the product."

    def reset(self, seed: int):
        return "A search box.", {"anchor": "search", "won": False}

    def step(self, action_text: str):
        raise AssertionError("nothing can be recorded, so nothing is played")

    def close(self) -> None:
        pass


def test_an_env_with_neither_list_nor_expert_is_named(monkeypatch):
    monkeypatch.setattr("hgpo.warm_start.make_env", lambda name, **kwargs: NoExpertNoList())
    with pytest.raises(ValueError, match=r"model\.warm_start: env 'keyroom' gave no example.*enabled=false"):
        solver_examples(EnvConfig(), WarmStartConfig(episodes=2), seed=0)


def test_cache_key_follows_the_environment_source(tmp_path, monkeypatch):
    """A change to a registered environment's texts or rules builds a new warm start instead of reusing one
    trained on the old texts."""
    import importlib.util
    import sys

    from envs.registry import ENVIRONMENTS
    from hgpo.warm_start import env_source_digest

    module = tmp_path / "room_env.py"

    def register(text: str) -> str | None:
        module.write_text(f"class RoomEnv:\n    task_description = {text!r}\n")
        spec = importlib.util.spec_from_file_location("room_env", module)
        loaded = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "room_env", loaded)
        spec.loader.exec_module(loaded)
        monkeypatch.setitem(ENVIRONMENTS, "room", loaded.RoomEnv)
        return env_source_digest("room")

    first, again, changed = register("Open the door."), register("Open the door."), register("Open the gate.")
    assert first == again and first != changed
    assert env_source_digest("package.module:SomeEnv") is None  # an import path is never imported for the key
