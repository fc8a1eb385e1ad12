"""The multi-turn loop: memory window -> prompt -> generate -> parse action -> env.step, for many episodes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xxhash

from envs.base import TextEnv
from hgpo.batch import Ragged, StepBatch
from hgpo.rollout.engines.base import Engine, SamplingParams
from hgpo.rollout.memory import Memory
from hgpo.rollout.parsing import parse_action
from hgpo.rollout.prompts import build_user_message, encode_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpisodeSpec:
    group_id: int
    traj_id: int
    seed: int
    """Environment seed; every episode of a group has the same one (group reset)."""


def text_key(text: str) -> int:
    """Stable 64-bit hash of a text (xxh3), the same in every process and run."""
    return xxhash.xxh3_64_intdigest(text.encode("utf-8"))


@dataclass
class _Episode:
    env: TextEnv
    spec: EpisodeSpec
    memory: Memory
    observation: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    won: bool = False
    failed: bool = False


def run_episodes(
    envs: list[TextEnv],
    specs: list[EpisodeSpec],
    engine: Engine,
    tokenizer: Any,
    *,
    history_length: int,
    max_steps: int,
    params: SamplingParams,
    max_prompt_tokens: int,
    seed: int,
) -> tuple[StepBatch, dict[str, float]]:
    """Play one episode per spec to the end or `max_steps`; only unfinished episodes generate.

    Returns the StepBatch (one row per turn) and rollout statistics. An environment that raises marks
    its own trajectory failed (kept in the batch, flagged, excluded from the loss); the others go on.
    """
    episodes = [_Episode(env, spec, Memory(history_length)) for env, spec in zip(envs, specs)]
    rows: dict[str, list] = {k: [] for k in _ROW_FIELDS}
    generate_s = env_s = 0.0
    env_start = time.perf_counter()
    for ep in episodes:
        try:
            ep.observation, ep.info = ep.env.reset(ep.spec.seed)
        except Exception as err:  # an environment that cannot start fails only its own trajectory
            log.warning("env reset failed for trajectory %d (seed %d): %r", ep.spec.traj_id, ep.spec.seed, err)
            ep.failed = True
    env_s += time.perf_counter() - env_start
    active = [ep for ep in episodes if not ep.failed]
    for turn in range(max_steps):
        prompts = [encode_prompt(tokenizer, _user_message(ep)) for ep in active]
        for ep, prompt in zip(active, prompts):
            if len(prompt) > max_prompt_tokens:
                log.warning(
                    "trajectory %d: prompt of %d tokens exceeds rollout.max_prompt_tokens=%d",
                    ep.spec.traj_id,
                    len(prompt),
                    max_prompt_tokens,
                )
                ep.failed = True
        prompts = [p for ep, p in zip(active, prompts) if not ep.failed]
        active = [ep for ep in active if not ep.failed]
        if not active:
            break
        start = time.perf_counter()
        generations = engine.generate(prompts, params, seed=_turn_seed(seed, turn))
        generate_s += time.perf_counter() - start
        still_active = []
        start = time.perf_counter()
        for ep, prompt, gen in zip(active, prompts, generations):
            text = tokenizer.decode(gen.token_ids, skip_special_tokens=True)
            parsed = parse_action(text, ep.info.get("admissible_actions"))
            try:
                observation, reward, done, info = ep.env.step(parsed.action)
            except Exception as err:
                log.warning("env step failed for trajectory %d at step %d: %r", ep.spec.traj_id, turn, err)
                ep.failed = True
                continue
            _append_row(rows, ep, turn, prompt, gen.token_ids, gen.logprobs, parsed.action, reward, not parsed.valid)
            ep.memory.add(ep.observation, parsed.action)
            ep.observation, ep.info = observation, info
            if done:
                ep.won = bool(info.get("won", False))
            else:
                still_active.append(ep)
        env_s += time.perf_counter() - start
        active = still_active
    batch = _to_batch(rows, episodes)
    stats = {
        "rollout/generate_s": generate_s,
        "rollout/env_s": env_s,
        "rollout/trajectories": float(len(episodes)),
        "rollout/failed_trajectories": float(sum(ep.failed for ep in episodes)),
        "rollout/won_trajectories": float(sum(ep.won and not ep.failed for ep in episodes)),
    }
    return batch, stats


_ROW_FIELDS = (
    "group_ids",
    "traj_ids",
    "step_ids",
    "state_keys",
    "action_keys",
    "rewards",
    "invalid",
    "prompt_ids",
    "response_ids",
    "response_logprobs",
)


def _user_message(ep: _Episode) -> str:
    return build_user_message(
        ep.env.task_description,
        ep.memory.recent(),
        ep.observation,
        ep.info.get("admissible_actions"),
        ep.memory.steps_taken,
    )


def _turn_seed(seed: int, turn: int) -> int:
    return int(np.random.SeedSequence([seed, turn]).generate_state(1)[0])


def _append_row(rows, ep, turn, prompt, response_ids, logprobs, action, reward, invalid) -> None:
    rows["group_ids"].append(ep.spec.group_id)
    rows["traj_ids"].append(ep.spec.traj_id)
    rows["step_ids"].append(turn)
    rows["state_keys"].append(text_key(ep.info.get("anchor", ep.observation)))
    rows["action_keys"].append(text_key(action))
    rows["rewards"].append(float(reward))
    rows["invalid"].append(invalid)
    rows["prompt_ids"].append(prompt)
    rows["response_ids"].append(response_ids)
    rows["response_logprobs"].append(logprobs)


def _to_batch(rows: dict[str, list], episodes: list[_Episode]) -> StepBatch:
    traj_ids = np.asarray(rows["traj_ids"], dtype=np.int64)
    won = {ep.spec.traj_id: ep.won and not ep.failed for ep in episodes}
    failed = {ep.spec.traj_id: ep.failed for ep in episodes}
    return StepBatch(
        group_ids=np.asarray(rows["group_ids"], dtype=np.int64),
        traj_ids=traj_ids,
        step_ids=np.asarray(rows["step_ids"], dtype=np.int64),
        state_keys=np.asarray(rows["state_keys"], dtype=np.uint64),
        action_keys=np.asarray(rows["action_keys"], dtype=np.uint64),
        rewards=np.asarray(rows["rewards"], dtype=np.float64),
        invalid=np.asarray(rows["invalid"], dtype=bool),
        traj_won=np.asarray([won[t] for t in rows["traj_ids"]], dtype=bool),
        traj_failed=np.asarray([failed[t] for t in rows["traj_ids"]], dtype=bool),
        prompt_ids=Ragged.from_rows(rows["prompt_ids"], np.int32),
        response_ids=Ragged.from_rows(rows["response_ids"], np.int32),
        response_logprobs=Ragged.from_rows(rows["response_logprobs"], np.float32),
    )
