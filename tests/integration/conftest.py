"""Integration runs share one warm-started tiny model (built once per session, about 10 s)."""

import pytest

WARM_START = [
    "model.warm_start.episodes=150", "model.warm_start.epochs=6", "model.warm_start.lr=0.01",
    "model.warm_start.batch_size=32", "model.warm_start.epsilon=0.5",
]  # fmt: skip


@pytest.fixture(scope="session")
def warm_start_overrides(tmp_path_factory) -> list[str]:
    """Hydra overrides that point every integration run at the same cached warm start."""
    return [*WARM_START, f"model.cache_dir={tmp_path_factory.mktemp('model-cache')}"]
