"""Build StepBatches from real engine generations, for learner tests."""

import numpy as np

from hgpo.batch import Ragged, StepBatch
from hgpo.rollout.engines import SamplingParams


def batch_from_prompts(engine, prompts: list[list[int]], temperature: float, seed: int = 0) -> StepBatch:
    """One row per prompt (each its own trajectory, step 0), with the engine's sampled ids and logprobs."""
    gens = engine.generate(prompts, SamplingParams(max_tokens=10, temperature=temperature), seed=seed)
    n = len(prompts)
    return StepBatch(
        group_ids=np.zeros(n, np.int64), traj_ids=np.arange(n), step_ids=np.zeros(n, np.int64),
        state_keys=np.zeros(n, np.uint64), action_keys=np.zeros(n, np.uint64), rewards=np.zeros(n),
        invalid=np.zeros(n, bool), traj_won=np.zeros(n, bool), traj_failed=np.zeros(n, bool),
        prompt_ids=Ragged.from_rows(prompts, np.int32),
        response_ids=Ragged.from_rows([g.token_ids for g in gens], np.int32),
        response_logprobs=Ragged.from_rows([g.logprobs for g in gens], np.float32),
    )  # fmt: skip
