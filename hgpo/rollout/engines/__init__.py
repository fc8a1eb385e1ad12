"""Generation engines behind one interface: token ids in, token ids + logprobs out."""

from hgpo.config import RolloutConfig
from hgpo.rollout.engines.base import Engine, Generation, SamplingParams

__all__ = ["Engine", "Generation", "SamplingParams", "make_engine"]


def make_engine(cfg: RolloutConfig, model_path: str, dtype: str) -> Engine:
    """Build the engine named by rollout.engine (vllm is imported only here, when chosen)."""
    if cfg.engine == "hf":
        from hgpo.rollout.engines.hf import HFEngine

        return HFEngine(model_path, dtype=dtype, torch_threads=cfg.torch_threads)
    if cfg.engine == "vllm":
        from hgpo.rollout.engines.vllm import VLLMEngine

        return VLLMEngine(cfg, model_path, dtype)
    raise ValueError(f"rollout.engine: unknown engine {cfg.engine!r}; choices: ['hf', 'vllm']")
