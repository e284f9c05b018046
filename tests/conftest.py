"""Shared small sweeps: compiled once per test session to keep the suite fast."""

import pytest

from grokjax.config import SweepConfig
from grokjax.train import enable_compilation_cache, run_sweep

enable_compilation_cache()

# A small task that trains in seconds: 11*11 pairs, 60 train, batch 16 (4 steps, last partial).
TINY = dict(m=11, hidden=16, train_fracs=(0.5,), batch_size=16, epochs=20, chunk_epochs=20)


@pytest.fixture(scope="session")
def tiny_config() -> SweepConfig:
    return SweepConfig(**TINY, seeds=(0, 1), wds=(0.0, 1e-2), lrs=(1e-2, 3e-3))


@pytest.fixture(scope="session")
def tiny_sweep(tiny_config):
    return run_sweep(tiny_config)
