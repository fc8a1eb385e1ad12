import random

import pytest

from envs import TextEnv, make_env
from envs.sokoban import MOVES, SokobanEnv, generate_room, push, solve


def play_plan(env, seed):
    """Reset, solve the start by BFS, play the plan through step(); return (rewards, last info)."""
    env.reset(seed)
    plan = solve(env._floor, env._targets, env._player, env._boxes)
    assert plan, f"seed {seed}: generated room has no solution"
    rewards, info = [], None
    for action in plan:
        _, reward, done, info = env.step(action)
        rewards.append(reward)
        assert done == (len(rewards) == len(plan))
    return rewards, info


@pytest.mark.parametrize("height,width,num_boxes", [(6, 6, 1), (7, 7, 2)])
def test_every_generated_room_is_won_by_the_solver_through_the_protocol(height, width, num_boxes):
    env = make_env("sokoban", height=height, width=width, num_boxes=num_boxes)
    assert isinstance(env, TextEnv)
    for seed in range(40):
        rewards, info = play_plan(env, seed)
        assert rewards[-1] == 10.0 and sum(rewards) == 10.0 and info["won"]
        assert info["admissible_actions"] == []


def test_expert_action_wins_and_start_is_never_solved():
    env = SokobanEnv()
    for seed in range(20):
        obs, info = env.reset(seed)
        assert obs.count("$") >= 1 and info["admissible_actions"] == list(MOVES) and not info["won"]
        for _ in range(30):
            obs, reward, done, info = env.step(env.expert_action())
            if done:
                break
        assert done and info["won"] and reward == 10.0 and "$" not in obs


def test_room_text_has_walls_boxes_and_targets():
    obs, info = SokobanEnv(height=7, width=8, num_boxes=2).reset(3)
    rows = obs.split("\n")
    assert len(rows) == 7 and all(len(r) == 8 for r in rows) and info["anchor"] == obs
    assert set(rows[0]) == set(rows[-1]) == {"#"} and all(r[0] == r[-1] == "#" for r in rows)
    assert sum(obs.count(c) for c in "$*") == 2 and sum(obs.count(c) for c in ".*+") == 2
    assert sum(obs.count(c) for c in "@+") == 1 and set(obs) <= set("#_.$*@+\n")


def test_same_seed_same_start_and_group_reset_identical():
    group = [make_env("sokoban") for _ in range(4)]
    starts = [env.reset(11) for env in group]
    assert all(s == starts[0] for s in starts)
    traces = [[env.step(a) for a in ["left", "up", "right", "down", "left"]] for env in group]
    assert all(t == traces[0] for t in traces)
    assert len({SokobanEnv().reset(seed)[0] for seed in range(20)}) > 15


def test_push_rules_by_hand():
    floor = frozenset((1, c) for c in range(1, 5))  # one corridor: #____#
    player, boxes = push(floor, (1, 1), frozenset({(1, 2)}), MOVES["right"])
    assert (player, boxes) == ((1, 2), frozenset({(1, 3)}))
    assert push(floor, (1, 3), frozenset({(1, 4)}), MOVES["right"]) == ((1, 3), frozenset({(1, 4)}))  # box at wall
    two = frozenset({(1, 2), (1, 3)})
    assert push(floor, (1, 1), two, MOVES["right"]) == ((1, 1), two)  # two boxes in a row
    assert push(floor, (1, 1), frozenset(), MOVES["up"]) == ((1, 1), frozenset())  # wall
    assert solve(floor, frozenset({(1, 4)}), (1, 1), frozenset({(1, 2)})) == ["right", "right"]
    assert solve(floor, frozenset({(1, 1)}), (1, 1), frozenset({(1, 4)})) is None  # box stuck against the wall


def test_invalid_and_blocked_moves_keep_the_state_and_finished_episode_raises():
    env = SokobanEnv()
    obs, info = env.reset(5)
    assert env.step("jump")[:3] == (obs, 0.0, False)
    assert env.step("")[3]["admissible_actions"] == info["admissible_actions"]
    play_plan(env, 5)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("up")
    env.close()
    env.close()


def test_generator_is_a_pure_function_of_its_rng():
    a = generate_room(random.Random(7), 6, 6, 1)
    b = generate_room(random.Random(7), 6, 6, 1)
    assert a == b and a[1] != a[3]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="height"):
        SokobanEnv(height=3)
    with pytest.raises(ValueError, match="num_boxes"):
        SokobanEnv(num_boxes=0)
    with pytest.raises(ValueError, match="num_boxes"):
        SokobanEnv(height=6, width=6, num_boxes=5)
    with pytest.raises(ValueError, match="boxes"):
        make_env("sokoban", boxes=2)
