import pytest

from envs.gold_path import GoldPath


def test_follows_the_path_until_an_action_that_changes_the_state_leaves_it():
    path = GoldPath(["open door", "go north"])
    assert path.next_action(done=False) == "open door"
    path.record("look", changed_state=False)  # an unknown action changes nothing: still on the path
    path.record("open door", changed_state=True)
    assert path.next_action(done=False) == "go north"
    path.record("go south", changed_state=True)
    with pytest.raises(RuntimeError, match="left the gold action sequence"):
        path.next_action(done=False)


def test_no_action_after_the_end_or_once_done():
    path = GoldPath(["take key"])
    with pytest.raises(RuntimeError):
        path.next_action(done=True)
    path.record("take key", changed_state=True)
    with pytest.raises(RuntimeError):
        path.next_action(done=False)
