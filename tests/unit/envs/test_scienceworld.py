import shutil
import sys

import pytest

from envs import TextEnv, make_env
from envs.scienceworld import ScienceWorldEnv

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java 17+ on PATH")

TASKS = ["find-plant", "lifespan-longest-lived"]  # gold paths of 8-12 steps


@pytest.fixture(scope="module")
def env():
    env = make_env("scienceworld", task_names=TASKS)  # one JVM for the module
    yield env
    env.close()


def play_gold(env, seed):
    obs, info = env.reset(seed)
    trace, rewards = [(obs, info)], []
    for _ in range(60):
        obs, reward, done, info = env.step(env.expert_action())
        trace.append((obs, info))
        rewards.append(reward)
        if done:
            return trace, rewards
    raise AssertionError("gold path did not end the task")


def test_gold_path_wins_and_the_same_seed_replays_the_same_episode(env):
    """One JVM per instance: `env` plays seeds 0 and 1, a fresh instance plays seed 1, `env` replays seed 0."""
    assert isinstance(env, TextEnv)
    traces = {}
    for seed, words in ((0, "find a(n) plant"), (1, "longest life span")):
        traces[seed], rewards = play_gold(env, seed)
        assert words in env.task_description and env.task_description.startswith(ScienceWorldEnv.task_description)
        assert traces[seed][-1][1]["won"] and traces[seed][-1][1]["score"] == 1.0
        assert rewards[-1] == 10.0 and sum(rewards) == 10.0
        assert all(info["anchor"] == obs and "admissible_actions" not in info for obs, info in traces[seed])
    assert traces[0] != traces[1]
    other = ScienceWorldEnv(task_names=TASKS)  # a second JVM, fresh
    assert play_gold(other, 1)[0] == traces[1]
    other.close()
    assert env.reset(0) == traces[0][0]  # a JVM that has played builds worlds differently: reset restarts it


def test_free_text_actions_and_finished_episode(env):
    env.reset(0)
    obs, reward, done, info = env.step("dance wildly")
    assert obs == "No known action matches that input." and (reward, done, info["won"]) == (0.0, False, False)
    while not done:
        _, reward, done, info = env.step(env.expert_action())
    assert info["won"] and reward == 10.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step("look around")
    spare = ScienceWorldEnv()
    spare.close()
    spare.close()


def test_bad_arguments_and_missing_package_are_named(monkeypatch):
    with pytest.raises(ValueError, match="split"):
        ScienceWorldEnv(split="valid")
    with pytest.raises(ValueError, match="task_names"):
        ScienceWorldEnv(task_names=["boil", "fly-to-the-moon"])
    with pytest.raises(ValueError, match="task_names"):
        ScienceWorldEnv(task_names=[])
    monkeypatch.setitem(sys.modules, "scienceworld", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[science\]"'):
        ScienceWorldEnv()
