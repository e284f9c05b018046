"""Shared small sweeps: compiled once per test session to keep the suite fast."""

import contextlib
import io

import jax
import pytest

from grokjax import sweep
from grokjax.config import SweepConfig
from grokjax.driver import enable_compilation_cache, run_sweep

enable_compilation_cache()
# This process trains on one CPU device whatever the machine, also when a test calls the
# command in-process (whose default would split the CPU); several devices are tested in
# processes of their own.
jax.config.update("jax_num_cpu_devices", 1)

# A small task that trains in seconds: 11*11 pairs, 60 train, batch 16 (4 steps, last partial).
TINY = dict(m=11, hidden=16, train_fracs=(0.5,), batch_size=16, epochs=20, chunk_epochs=20)


@pytest.fixture(scope="session")
def tiny_config() -> SweepConfig:
    return SweepConfig(**TINY, seeds=(0, 1), wds=(0.0, 1e-2), lrs=(1e-2, 3e-3))


@pytest.fixture(scope="session")
def tiny_sweep(tiny_config):
    return run_sweep(tiny_config)


@pytest.fixture(scope="session")
def two_program_folder(tmp_path_factory):
    """A finished command-line sweep of two programs (hidden 8, 12) x two training fractions."""
    out = tmp_path_factory.mktemp("cli-programs") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert sweep.main(["--m", "11", "--hidden", "8,12", "--batch-size", "16", "--epochs", "6", "--chunk-epochs", "3",
                           "--seeds", "2", "--wd", "1e-2", "--lr", "1e-2", "--train-frac", "0.3,0.5", "--quiet",
                           "--out", str(out)]) == 0
    assert "8 runs (2 seeds x 2 train fractions x 1 wd x 1 lr in 2 programs over hidden)" in printed.getvalue()
    return out
