"""ALFWorld's package and data are not installed here: the adapter is checked against a stand-in of the batch
environment that `AlfredTWEnv(config, train_eval=split).init_env(batch_size=1)` returns (textworld.gym's
batch env: lists in, lists out). Its texts are copied from a run of alfworld 0.4.2 on a one-game dataset."""

import sys

import pytest

import envs.alfworld as alfworld_module
from envs import TextEnv, make_env
from envs.alfworld import SPLITS, TASK_TYPES, AlfWorldEnv, resolve_data_path, task_type

GAMEFILE = "{root}/json_2.1.1/train/pick_and_place_simple-Book-None-Sofa-1/trial_T0/game.tw-pddl"
START = "You are in the middle of a room. Looking quickly around you, you see a armchair 1, and a sofa 1."
GAME = {  # (state, command) -> (next state, feedback); states: 0 start, 1 at armchair, 2 holding book, 3 at sofa
    (0, "go to armchair 1"): (1, "You arrive at armchair 1. On the armchair 1, you see a book 1."),
    (1, "take book 1 from armchair 1"): (2, "You pick up the book 1 from the armchair 1."),
    (2, "go to sofa 1"): (3, "You arrive at sofa 1. On the sofa 1, you see nothing."),
    (3, "move book 1 to sofa 1"): (4, "You move the book 1 to the sofa 1."),
}


class StandInBatchEnv:
    """One game; records seeds, commands and closes."""

    def __init__(self, root, split):
        self.gamefile, self.split = GAMEFILE.format(root=root), split
        self.seeds, self.commands, self.closed, self.state = [], [], 0, 0

    def seed(self, seed):
        self.seeds.append(seed)
        return [seed]

    def reset(self):
        self.state = 0
        obs = f"-= Welcome to TextWorld, ALFRED! =-\n\n{START}\n\nYour task is to: put some book on sofa."
        return [obs], self._infos()

    def step(self, commands):
        self.commands.append(commands)
        self.state, feedback = GAME.get((self.state, commands[0]), (self.state, "Nothing happens."))
        won = self.state == 4
        return [feedback], [float(won)], [won], self._infos()

    def close(self):
        self.closed += 1

    def _infos(self):
        admissible = [cmd for (state, cmd) in GAME if state == self.state] + ["help", "inventory", "look"]
        infos = {"admissible_commands": [admissible], "won": [self.state == 4], "extra.gamefile": [self.gamefile]}
        if self.split == "train":
            plan = [cmd for (state, cmd) in GAME if state == self.state]
            infos["extra.expert_plan"] = [plan]
        return infos


@pytest.fixture
def data_dir(tmp_path):
    for split_dir in SPLITS.values():
        (tmp_path / "json_2.1.1" / split_dir).mkdir(parents=True)
    (tmp_path / "logic").mkdir()
    (tmp_path / "logic" / "alfred.pddl").write_text("(define (domain alfred))")
    return tmp_path


@pytest.fixture
def made(monkeypatch, data_dir):
    """Replace the one function that touches the alfworld package; record what the adapter asked it for."""
    made = {}

    def load(config, split):
        made.update(config=config, split=split, batch=StandInBatchEnv(data_dir, split))
        return made["batch"]

    monkeypatch.setattr(alfworld_module, "load_batch_env", load)
    return made


def test_adapter_drives_the_batch_env_and_wins_with_the_expert(made, data_dir):
    env = make_env("alfworld", data_path=str(data_dir))
    assert isinstance(env, TextEnv)
    config, split, batch = made["config"], made["split"], made["batch"]
    assert split == "train" and config["dataset"]["data_path"] == str(data_dir / "json_2.1.1" / "train")
    assert config["dataset"]["eval_ood_data_path"] == str(data_dir / "json_2.1.1" / "valid_unseen")
    assert config["logic"]["domain"] == str(data_dir / "logic" / "alfred.pddl")
    assert config["general"]["training_method"] == "dagger"  # the train split then carries the expert plan

    obs, info = env.reset(7)
    assert batch.seeds == [7] and obs == START and info["anchor"] == START
    assert env.task_description == f"{AlfWorldEnv.task_description} Your task is to: put some book on sofa."
    assert info["task_type"] == "pick_and_place" and not info["won"]
    assert info["admissible_actions"] == ["go to armchair 1", "inventory", "look"]  # "help" dropped
    rewards = []
    for _ in range(10):
        obs, reward, done, info = env.step(env.expert_action())
        rewards.append(reward)
        if done:
            break
    assert rewards == [0.0, 0.0, 0.0, 10.0] and info["won"] and info["admissible_actions"] == []
    assert obs == "You move the book 1 to the sofa 1." and batch.commands[-1] == ["move book 1 to sofa 1"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step("look")
    env.close()
    env.close()
    assert batch.closed == 1


def test_non_admissible_commands_never_reach_the_game(made, data_dir):
    env = AlfWorldEnv(data_path=str(data_dir))
    obs, info = env.reset(0)
    for command in ["help", "fly to the moon", ""]:
        assert env.step(command) == (obs, 0.0, False, info)
    assert made["batch"].commands == []
    _, _, done, info = env.step("  Go to ARMCHAIR 1 ")  # whitespace and case are forgiven
    assert made["batch"].commands == [["go to armchair 1"]] and not done


def test_eval_splits_reach_alfworld_and_have_no_expert(made, data_dir):
    env = AlfWorldEnv(data_path=str(data_dir), split="eval_out_of_distribution")
    assert made["split"] == "eval_out_of_distribution"
    env.reset(3)
    with pytest.raises(RuntimeError, match="train"):
        env.expert_action()


def test_same_seed_is_handed_to_alfworld_before_every_reset(made, data_dir):
    env = AlfWorldEnv(data_path=str(data_dir))
    assert env.reset(5) == env.reset(5)
    env.reset(2**33 + 5)
    assert made["batch"].seeds == [5, 5, 5]  # numpy RandomState seeds stay below 2**32


def test_task_types_map_to_the_paper_metric_names():
    names = {
        task_type(f"/d/json_2.1.1/train/{prefix}-Apple-None-Fridge-10/trial_T1/game.tw-pddl") for prefix in TASK_TYPES
    }
    assert names == {
        "pick_and_place",
        "look_at_obj_in_light",
        "pick_clean_then_place",
        "pick_heat_then_place",
        "pick_cool_then_place",
        "pick_two_obj",
    }


def test_missing_data_says_what_to_download_and_where(tmp_path, monkeypatch, data_dir):
    with pytest.raises(FileNotFoundError, match=r"alfworld-download.*ALFWORLD_DATA") as err:
        AlfWorldEnv(data_path=str(tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(err.value)
    monkeypatch.setenv("ALFWORLD_DATA", str(data_dir))
    assert resolve_data_path(None) == data_dir
    monkeypatch.delenv("ALFWORLD_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / ".cache" / "alfworld")):
        resolve_data_path(None)


def test_missing_package_names_the_extra(monkeypatch, data_dir):
    monkeypatch.setitem(sys.modules, "alfworld", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[alfworld\]"'):
        AlfWorldEnv(data_path=str(data_dir))


def test_bad_split_is_named():
    with pytest.raises(ValueError, match="split"):
        AlfWorldEnv(split="valid_seen")
