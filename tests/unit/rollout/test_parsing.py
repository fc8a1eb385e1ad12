import pytest

from hgpo.rollout.parsing import parse_action

ADMISSIBLE = ["take red key", "take blue key"]


@pytest.mark.parametrize(
    "text, action",
    [
        ("<think> hmm </think><action> take red key </action>", "take red key"),
        ("  <think>\nmulti\nline</think>\n<action>take   blue key</action>\n", "take blue key"),
        ("<think></think><action>TAKE RED KEY</action>", "take red key"),
    ],
)
def test_valid(text, action):
    parsed = parse_action(text, ADMISSIBLE)
    assert parsed.valid and parsed.action == action


@pytest.mark.parametrize(
    "text",
    [
        "take red key",
        "<action>take red key</action>",
        "<think>x</think>",
        "<think>x</think><action></action>",
        "<think>x</think><action>take green key</action>",
        "<think>x</think><action>take red key</action> trailing",
        "<think>x</think><action>take red key</action><action>take blue key</action>",
        "<think>a<think>b</think><action>take red key</action>",
    ],
)
def test_invalid(text):
    assert not parse_action(text, ADMISSIBLE).valid


def test_without_admissible_list_any_action_is_valid():
    parsed = parse_action("<think>.</think><action> go north </action>", None)
    assert parsed.valid and parsed.action == "go north"
