import pytest

from envs import TextEnv, make_env
from envs.crossroads import CrossroadsEnv


def play(env, seed, choose):
    """Play to the end with choose(env, info) -> action; return (observations, total reward, won)."""
    obs, info = env.reset(seed)
    trace, total = [obs], 0.0
    for _ in range(50):
        obs, reward, done, info = env.step(choose(env, info))
        trace.append(obs)
        total += reward
        if done:
            return trace, total, info["won"]
    raise AssertionError("episode did not end")


def take_path(env, seed, index):
    """Reset and take the index-th listed path; return the observation after it."""
    _, info = env.reset(seed)
    return env.step(info["admissible_actions"][index])[0]


def win_probability(env, depth=0):
    """P(reach the road) from the current state when every admissible action is equally likely (exact)."""
    import copy

    actions = env.admissible_actions()
    total = 0.0
    for action in actions:
        child = copy.deepcopy(env)
        _, reward, done, _ = child.step(action)
        total += (reward > 0) if done else win_probability(child, depth + 1)
    return total / len(actions)


def test_protocol_and_solver_wins_on_both_routes():
    env = make_env("crossroads", trail_length=3)
    assert isinstance(env, TextEnv)
    for seed in range(20):
        for path in (0, 1):

            def solver(e, info, path=path):
                return (
                    info["admissible_actions"][path] if "path" in info["admissible_actions"][0] else e.expert_action()
                )

            trace, total, won = play(env, seed, solver)
            assert won and total == 10.0
            assert len(trace) == 1 + 1 + 3 + 1  # crossroads, 3 bridges, hall, road


def test_same_seed_same_start_and_group_reset_identical():
    group = [make_env("crossroads") for _ in range(4)]
    starts = [env.reset(5) for env in group]
    assert all(s == starts[0] for s in starts)
    traces = [play(env, 5, lambda e, info: e.expert_action())[0] for env in group]
    assert all(t == traces[0] for t in traces)
    assert len({CrossroadsEnv().reset(s)[0] for s in range(10)}) == 2  # the seed orders the two paths


def test_route_order_depends_on_the_path_and_the_seed():
    env = CrossroadsEnv(trail_length=2)
    first_path_to_hall = set()
    for seed in range(10):
        after = [take_path(env, seed, i) for i in (0, 1)]
        assert sorted(o.startswith("You are in a hall") for o in after) == [False, True]
        assert any(o.startswith("A sign points to the") for o in after)
        first_path_to_hall.add(after[0].startswith("You are in a hall"))
    assert first_path_to_hall == {True, False}  # which listed path reaches the hall first varies with the seed


def walk_to_hall(seed, trail_first, trail=2):
    """An environment standing in the hall, reached by the trail-first or the hall-first route, and the hall text."""
    for index in (0, 1):
        env = CrossroadsEnv(trail_length=trail)
        obs = take_path(env, seed, index)
        if obs.startswith("You are in a hall") != trail_first:
            break
    while not obs.startswith("You are in a hall"):
        obs = env.step(env.expert_action())[0]
    return env, obs


def test_hall_reads_the_same_on_both_routes_but_the_right_door_differs():
    hall_first, hall_text = walk_to_hall(3, trail_first=False)
    trail_first, same_text = walk_to_hall(3, trail_first=True)
    assert hall_text == same_text
    assert hall_first.admissible_actions() == trail_first.admissible_actions()
    assert hall_first.expert_action() == "open iron door" and trail_first.expert_action() == "open oak door"
    # the door that is right for one history ends the other
    _, _, done, info = hall_first.step("open oak door")
    assert done and not info["won"] and "over" in info["anchor"]
    _, reward, done, info = trail_first.step("open oak door")
    assert done and info["won"] and reward == 10.0


def test_the_same_hall_has_different_values_under_a_random_policy():
    """The point of the environment: the hall-first hall is worth 0.5**(trail+1), the trail-first hall 0.5."""
    for trail in (1, 2, 3):
        values = {win_probability(walk_to_hall(11, trail_first, trail)[0]) for trail_first in (False, True)}
        assert values == {0.5, 0.5 ** (trail + 1)}


def test_bridges_read_the_same_on_both_routes():
    for seed in range(5):
        bridges = []
        for index in (0, 1):
            env = CrossroadsEnv(trail_length=3)
            obs, _ = env.reset(seed)
            seen = []
            done = False
            action = env.admissible_actions()[index]
            while not done:
                obs, _, done, info = env.step(action)
                if obs.startswith("A sign"):
                    seen.append(obs)
                action = env.expert_action() if not done else None
            bridges.append(seen)
        assert bridges[0] == bridges[1] and len(bridges[0]) == 3


def test_wrong_bridge_ends_and_invalid_action_keeps_state():
    env = CrossroadsEnv(trail_length=2)
    obs, info = env.reset(0)
    same, reward, done, info2 = env.step("dance wildly")
    assert (same, reward, done) == (obs, 0.0, False) and info2["admissible_actions"] == info["admissible_actions"]
    current = obs
    while not current.startswith("A sign"):
        current = env.step(env.expert_action())[0]
    wrong = next(a for a in env.admissible_actions() if a != env.expert_action())
    _, reward, done, info = env.step(wrong)
    assert done and reward == 0.0 and not info["won"] and info["admissible_actions"] == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step("take river path")
    env.close()
    assert env.reset(0)[0] == obs


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="trail_length"):
        CrossroadsEnv(trail_length=0)
    with pytest.raises(ValueError, match="colors"):
        CrossroadsEnv(colors=["red", "red"])
    with pytest.raises(ValueError, match="doors"):
        make_env("crossroads", doors=3)


def test_without_signs_the_first_colour_holds_and_every_bridge_reads_alike():
    """signs=False: no sign to read, red always offered and always right; bridges on both routes and at every
    position read alike (two orders), the solver always wins, and the hall still needs the history."""
    env = CrossroadsEnv(trail_length=3, signs=False)
    assert "red bridge holds" in env.task_description and "sign" not in env.task_description
    bridge_texts = set()
    for seed in range(40):
        for path in (0, 1):

            def solver(e, info, path=path):
                actions = info["admissible_actions"]
                if "path" in actions[0]:
                    return actions[path]
                if "bridge" in actions[0]:
                    assert "cross red bridge" in actions and e.expert_action() == "cross red bridge"
                return e.expert_action()

            trace, _, won = play(env, seed, solver)
            assert won
            bridge_texts |= {obs for obs in trace if "bridge" in obs}
    assert bridge_texts == {
        "Before you are a red bridge and a blue bridge.",
        "Before you are a blue bridge and a red bridge.",
    }

    def memoryless(e, info):  # red bridge, always the iron door: wins only when the hall comes first
        actions = info["admissible_actions"]
        if "path" in actions[0]:
            return actions[0]
        return "cross red bridge" if "bridge" in actions[0] else "open iron door"

    wins = [play(env, seed, memoryless)[2] for seed in range(100)]
    assert 0 < sum(wins) < 100
    env.reset(3)
    assert win_probability(env) == pytest.approx(0.5**4)  # three bridges and the hall, each a coin flip
