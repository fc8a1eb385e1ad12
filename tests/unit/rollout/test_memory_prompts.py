from hgpo.rollout.memory import Memory
from hgpo.rollout.prompts import build_user_message, encode_prompt


def test_memory_keeps_last_h_pairs_and_counts_all_steps():
    memory = Memory(2)
    for i in range(5):
        memory.add(f"o{i}", f"a{i}")
    assert memory.recent() == [("o3", "a3"), ("o4", "a4")]
    assert memory.steps_taken == 5
    empty = Memory(0)
    empty.add("o", "a")
    assert empty.recent() == [] and empty.steps_taken == 1


def test_user_message_holds_task_window_observation_and_actions():
    text = build_user_message("Do it.", [("o3", "a3"), ("o4", "a4")], "now-obs", ["x", "y"], steps_taken=5)
    lines = text.splitlines()
    assert lines[0] == "Task: Do it."
    assert "[step 4] observation: o3 action: a3" in lines
    assert "[step 5] observation: o4 action: a4" in lines
    assert "Now: now-obs" in lines and "Admissible actions: x | y." in lines
    assert "<think>" in lines[-1] and "<action>" in lines[-1]
    first = build_user_message("Do it.", [], "start", None, steps_taken=0)
    assert "step" not in first and "Admissible" not in first


def test_prompt_uses_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = encode_prompt(tokenizer, build_user_message("Escape.", [], "You are in a room.", None, 0))
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<|user|>" and tokens[-2:] == ["<|end|>", "<|assistant|>"]
