import shutil
import sys

import pytest

from envs import TextEnv, make_env
from envs.textworld_express import UNKNOWN_ACTION, TextWorldExpressEnv

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="TextWorldExpress needs Java 17+ on PATH")

PARAMS = "numLocations=3,numIngredients=2,numDistractorItems=2,includeDoors=0,limitInventorySize=0"


@pytest.fixture(scope="module")
def env():
    env = make_env("textworld_express", game_name="cookingworld", game_params=PARAMS)  # one JVM for the module
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
    raise AssertionError("gold path did not end the game")


def test_gold_path_wins_through_the_protocol(env):
    assert isinstance(env, TextEnv)
    for seed in (0, 1, 2):
        trace, rewards = play_gold(env, seed)
        assert trace[-1][1]["won"] and trace[-1][1]["score"] == 1.0
        assert rewards[-1] == 10.0 and sum(rewards) == 10.0 and trace[-1][1]["admissible_actions"] == []
        assert all(info["anchor"] == obs for obs, info in trace)
    assert "cook" in env.task_description.lower()


def test_same_seed_same_start_and_group_reset_identical(env):
    other = TextWorldExpressEnv(game_name="cookingworld", game_params=PARAMS)  # a second JVM
    starts = [(e.reset(5), e.task_description) for e in (env, other)]
    assert starts[0] == starts[1]
    assert play_gold(env, 5) == play_gold(other, 5)
    other.close()
    assert env.reset(6)[0] != starts[0][0][0] or env.reset(7)[0] != starts[0][0][0]


def test_unknown_action_changes_nothing_and_leaving_the_gold_path_ends_the_expert(env):
    obs, info = env.reset(3)
    gold = env.expert_action()
    obs2, reward, done, info2 = env.step("dance wildly")
    assert obs2 == UNKNOWN_ACTION and (reward, done, info2["won"]) == (0.0, False, False)
    assert info2["admissible_actions"] == info["admissible_actions"] and env.expert_action() == gold
    off_gold = next(a for a in info["admissible_actions"] if a != gold)
    env.step(off_gold)
    with pytest.raises(RuntimeError, match="gold"):
        env.expert_action()


def test_finished_episode_raises_and_close_is_idempotent(env):
    play_gold(env, 0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("look around")
    spare = TextWorldExpressEnv()
    spare.close()  # never started: nothing to stop
    spare.close()


def test_bad_arguments_and_missing_package_are_named(monkeypatch):
    with pytest.raises(ValueError, match="game_name"):
        TextWorldExpressEnv(game_name="zork")
    with pytest.raises(ValueError, match="split"):
        TextWorldExpressEnv(split="valid")
    monkeypatch.setitem(sys.modules, "textworld_express", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[science\]"'):
        TextWorldExpressEnv()
