"""conf/experiment/: the paper's recipes compose, carry its hyperparameters, and fit the cluster they name."""

from pathlib import Path

import pytest

from hgpo.placement import build_plan, find_shortfalls, memory_preflight, unreserved_gpu_warnings
from hgpo.train import validate_overrides

RECIPES = sorted(p.stem for p in (Path(__file__).parents[2] / "conf" / "experiment").glob("*_k*.yaml"))
# What each recipe's name promises: environment, GPUs of 80 GB on one node, memory window K.
SETTINGS = {"alfworld": ("alfworld", 50, "std", 256), "webshop": ("webshop", 30, "none", 64)}
GPUS = {"qwen1.5b": 2, "qwen7b": 4}


def compose(recipe: str, *extra: str):
    return validate_overrides([f"+experiment={recipe}", "trainer.ray_address=auto", *extra])


def test_there_is_a_recipe_per_environment_model_and_window():
    assert RECIPES == [f"{e}_{m}_k{k}" for e in ("alfworld", "webshop") for m in ("qwen1.5b", "qwen7b") for k in (2, 4)]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_has_the_papers_hyperparameters(recipe):
    env_key, model_key, k = recipe.split("_")
    env, max_steps, normalize, minibatch_rows = SETTINGS[env_key]
    cfg = compose(recipe)
    assert (cfg.env.name, cfg.env.max_steps, cfg.env.history_length) == (env, max_steps, int(k[1:]))
    assert (cfg.algorithm.name, cfg.algorithm.gamma, cfg.algorithm.normalize) == ("hgpo", 0.95, normalize)
    assert (cfg.algorithm.alpha, cfg.algorithm.weight_offset, cfg.algorithm.episode_term) == (1.0, 1, False)
    assert (cfg.rollout.num_groups, cfg.rollout.group_size) == (16, 8)
    assert (cfg.rollout.max_prompt_tokens, cfg.rollout.max_response_tokens) == (4096, 512)
    assert (cfg.rollout.engine, cfg.rollout.gpu_memory_utilization) == ("vllm", 0.6)
    learner = cfg.learner
    assert (learner.lr, learner.kl_coef, learner.clip_ratio, learner.clip_ratio_c) == (1e-6, 0.01, 0.2, 3.0)
    assert (learner.entropy_coef, learner.max_grad_norm, learner.ppo_epochs) == (0.001, 1.0, 1)
    assert learner.minibatch_rows == minibatch_rows and cfg.env.invalid_penalty == 0.1
    assert (cfg.trainer.iterations, cfg.trainer.eval_every, cfg.eval.temperature) == (160, 5, 0.4)
    assert cfg.model.path == f"Qwen/Qwen2.5-{model_key[4:].upper()}-Instruct" and cfg.model.dtype == "bfloat16"
    assert compose(recipe, "algorithm=gigpo").algorithm.name == "gigpo"  # the baselines on the same setting


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_fits_its_node_and_not_a_smaller_one(recipe):
    gpus = GPUS[recipe.split("_")[1]]
    cfg = compose(recipe, "trainer.gpu_memory_gb=80")
    plan = build_plan(cfg)
    node = {"CPU": 64.0, "GPU": float(gpus)}
    assert find_shortfalls(plan, node, {"node": node}) == []
    assert unreserved_gpu_warnings(plan, node) == []  # learner and generators reserve GPUs of their own
    smaller = {"CPU": 64.0, "GPU": float(gpus - 1)}
    assert find_shortfalls(plan, smaller, {"node": smaller})  # the check can fail
    report, problems = memory_preflight(cfg)
    assert problems == [] and "learner rank" in report
    _, problems = memory_preflight(compose(recipe, "trainer.gpu_memory_gb=16"))
    assert problems  # a 16 GB GPU cannot hold the learner: the memory check can fail too
