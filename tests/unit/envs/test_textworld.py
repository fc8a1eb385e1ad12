import sys

import pytest

from envs import TextEnv, make_env
from envs.textworld import TextWorldEnv, clean_feedback

SMALL = {"num_rooms": 2, "num_objects": 3, "quest_length": 2}  # about 1.5 s to generate a game


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("textworld-games"))


@pytest.fixture(scope="module")
def env(cache_dir):
    env = make_env("textworld", cache_dir=cache_dir, **SMALL)
    yield env
    env.close()


def play_expert(env, seed):
    obs, info = env.reset(seed)
    trace, rewards = [(obs, info)], []
    for _ in range(20):
        obs, reward, done, info = env.step(env.expert_action())
        trace.append((obs, info))
        rewards.append(reward)
        if done:
            return trace, rewards
    raise AssertionError("walkthrough did not end the game")


def test_walkthrough_wins_through_the_protocol(env):
    assert isinstance(env, TextEnv)
    for seed in (0, 1):
        trace, rewards = play_expert(env, seed)
        assert trace[-1][1]["won"] and rewards[-1] == 10.0 and sum(rewards) == 10.0
        assert len(rewards) == SMALL["quest_length"] and trace[-1][1]["admissible_actions"] == []
        for obs, info in trace:
            assert info["anchor"] == obs and obs and "$$" not in obs and not obs.endswith(">")
            assert "RESTART" not in obs


def test_first_observation_is_clean_and_the_quest_moves_to_the_task(env):
    obs, info = env.reset(0)
    assert obs.startswith("-= ") and "TextWorld" not in obs  # the banner and the quest text are gone
    assert env.task_description.startswith(TextWorldEnv.task_description) and "Your quest:" in env.task_description
    assert "look" in info["admissible_actions"] and env.expert_action() in info["admissible_actions"]


def test_same_seed_same_start_and_group_reset_identical(env, cache_dir):
    group = [env] + [TextWorldEnv(cache_dir=cache_dir, **SMALL) for _ in range(2)]
    starts = [(e.reset(1), e.task_description) for e in group]
    assert all(s == starts[0] for s in starts)
    traces = [play_expert(e, 1) for e in group]
    assert all(t == traces[0] for t in traces)
    assert env.reset(0) != starts[0][0]
    for e in group[1:]:
        e.close()


def test_games_are_cached_and_not_generated_again(env, cache_dir, monkeypatch):
    import textworld.generator

    start = env.reset(0)
    assert env.game_file(0).is_file() and env.game_file(0).parent == env.cache_dir

    def refuse(*args, **kwargs):
        raise AssertionError("a cached game was generated again")

    monkeypatch.setattr(textworld.generator, "make_game", refuse)
    fresh = TextWorldEnv(cache_dir=cache_dir, **SMALL)
    assert fresh.reset(0) == start
    fresh.close()


def test_non_admissible_commands_never_reach_the_game(env):
    obs, info = env.reset(0)
    for command in ["quit", "restart", "xyzzy", "", "take the moon"]:
        assert env.step(command) == (obs, 0.0, False, info)
    _, rewards = play_expert(env, 0)  # a "quit" reaching the Z-machine would have stopped the game
    assert rewards[-1] == 10.0


def test_finished_episode_raises_and_close_is_idempotent(cache_dir):
    env = TextWorldEnv(cache_dir=cache_dir, **SMALL)
    play_expert(env, 0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("look")
    env.close()
    env.close()
    assert env.reset(0)[0]  # a closed env starts again on reset
    env.close()


def test_clean_feedback_strips_banner_prompt_and_end_question():
    raw = (
        "\n\n\n   ________  ________\n  |        \\|        \\\n   \\$$$$$$$$| $$$$$$$$\n"
        "     >$$  $$    | $$\n\nWelcome!\n\n-= Attic =-\nAn attic.\n\n\n\n"
        "There is a key.\n\n>                                   -= Attic =-0/2"
    )
    assert clean_feedback(raw) == "Welcome!\n\n-= Attic =-\nAn attic.\n\nThere is a key."
    end = "\nYou win.\n\n\nWould you like to RESTART, RESTORE a saved game, QUIT or UNDO the last command?\n>   x"
    assert clean_feedback(end) == "You win."


def test_bad_arguments_and_missing_package_are_named(monkeypatch):
    with pytest.raises(ValueError, match="num_rooms"):
        TextWorldEnv(num_rooms=0)
    with pytest.raises(ValueError, match="quest_length"):
        TextWorldEnv(quest_length=0)
    with pytest.raises(ValueError, match="num_objects"):
        TextWorldEnv(num_objects=-1)
    monkeypatch.setitem(sys.modules, "textworld", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[textworld\]"'):
        TextWorldEnv()
