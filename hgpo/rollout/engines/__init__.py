"""Generation engines behind one interface: token ids in, token ids + logprobs out."""

from hgpo.rollout.engines.base import Engine, Generation, SamplingParams

__all__ = ["Engine", "Generation", "SamplingParams", "make_engine"]


def make_engine(name: str, model_path: str, dtype: str, torch_threads: int) -> Engine:
    """Build the engine named by rollout.engine."""
    if name == "hf":
        from hgpo.rollout.engines.hf import HFEngine

        return HFEngine(model_path, dtype=dtype, torch_threads=torch_threads)
    raise ValueError(f"rollout.engine: unknown engine {name!r}; choices: ['hf']")
