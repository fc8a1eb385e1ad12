"""Can a model read Crossroads? The probability it gives the solver's action at each decision, by place.

On the solver's own episodes (seeds 0..N-1) every decision after the crossroads is scored: each admissible
action's tokens are scored after the prompt the rollout builds (hgpo.rollout.prompts, memory window
`--history`) and the warm start's response prefix, and the right action's share of the softmax over the
admissible actions is averaged per place: trail = the bridges; the hall on each route, "hall, trail ahead"
(the iron door is right) and "hall, trail behind" (the oak door). 0.5 is chance; a policy that has not
learned the history puts the same door first on both routes, so its two hall numbers add up to about 1.

    .venv/bin/python bench/crossroads_reading.py ~/.cache/hgpo/tiny-crossroads-<hash>   # a warm-started model
    .venv/bin/python bench/crossroads_reading.py --no-signs <run dir>/checkpoints/iter_000079/policy    # a trained one

Prints one line per place: `hall, trail ahead 103 mean p(right) 0.996`.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PLACES = {"take": "crossroads", "cross": "trail", "open iron": "hall, trail ahead", "open oak": "hall, trail behind"}
"""Where a decision is, from the solver's action (its verb; at the hall, the door the route calls for)."""


def place_of(right: str) -> str:
    words = right.split()
    return PLACES[" ".join(words[:2])] if words[0] == "open" else PLACES[words[0]]


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from envs.crossroads import CrossroadsEnv
    from hgpo.rollout.prompts import build_prompt_text, build_user_message
    from hgpo.warm_start import THOUGHT

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--trail-length", type=int, default=2)
    parser.add_argument("--history", type=int, default=2, help="memory window (env.history_length)")
    parser.add_argument("--no-signs", action="store_true", help="env.kwargs.signs=false")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir).eval()
    prefix = f"<think> {THOUGHT} </think><action>"
    shares: dict[str, list[float]] = {}
    for seed in range(args.episodes):
        env = CrossroadsEnv(trail_length=args.trail_length, signs=not args.no_signs)
        obs, info = env.reset(seed)
        history: list[tuple[str, str]] = []
        done = False
        while not done:
            right = env.expert_action()
            place = place_of(right)
            if place != "crossroads":  # the crossroads' two paths are both right
                message = build_user_message(
                    env.task_description, history[-args.history :] if args.history else [], obs,
                    info["admissible_actions"], len(history),
                )  # fmt: skip
                prompt = build_prompt_text(tokenizer, message) + prefix
                start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
                scores = []
                for action in info["admissible_actions"]:
                    ids = tokenizer(prompt + " " + action, add_special_tokens=False)["input_ids"]
                    with torch.no_grad():
                        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0], -1)
                    scores.append(sum(logprobs[i - 1, ids[i]].item() for i in range(start, len(ids))))
                share = torch.softmax(torch.tensor(scores), 0)[info["admissible_actions"].index(right)].item()
                shares.setdefault(place, []).append(share)
            history.append((obs, right))
            obs, _, done, info = env.step(right)
    for place, values in shares.items():
        print(f"{place} {len(values)} mean p(right) {sum(values) / len(values):.3f}")


if __name__ == "__main__":
    main()
