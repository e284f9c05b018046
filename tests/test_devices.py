"""One host device per core: the default split, the study-size sweep that used to deadlock
on two devices, and checkpoints that resume on another number of devices."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from grokjax import devices
from grokjax.config import ConfigError, sweep_plan_from_mapping
from grokjax.driver import SweepInterrupted, run_sweep
from grokjax.results import METRIC_NAMES, write_config

# The sweep command on two cores at most: XLA sizes its CPU thread pool from the process's
# affinity, and the deadlock needed as many busy devices as pool threads.
ON_TWO_CORES = ("import os, runpy, sys; os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2]); "
                "sys.argv[0] = 'grokjax.sweep'; runpy.run_module('grokjax.sweep', run_name='__main__')")


def test_the_count_set_for_the_process_wins():
    assert devices.forced_device_count("--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=3") == 3
    assert devices.forced_device_count("--xla_cpu_enable_fast_math=false") is None
    assert devices.configured_cpu_devices() == 1  # jax_num_cpu_devices, set by conftest, wins over XLA_FLAGS
    assert devices.usable_cores() == len(os.sched_getaffinity(0))


def test_a_started_jax_keeps_its_devices_unless_a_count_is_demanded():
    jax.devices()  # this test process has started JAX: its device count is fixed
    have = len(jax.devices("cpu"))
    devices.use_cpu_devices()  # the default leaves it alone
    devices.use_cpu_devices(have)  # so does asking for what it has
    assert len(jax.devices("cpu")) == have
    with pytest.raises(ConfigError, match=f"--cpu-devices {have + 1}: JAX has already started"):
        devices.use_cpu_devices(have + 1)
    with pytest.raises(ConfigError, match="--cpu-devices must be >= 1"):
        devices.use_cpu_devices(0)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_study_size_sweep_on_two_devices_finishes(tmp_path):
    # The study's sizes (m 97, hidden 128, batch 128 and full batch) with two runs per device:
    # batched LAPACK calls (SVD, eigvalsh) once deadlocked XLA's CPU thread pool here.
    out = tmp_path / "run"
    args = ["--cpu-devices", "2", "--seeds", "2", "--wd", "1e-4,1e-3", "--batch-size", "128,0", "--epochs", "2",
            "--quiet", "--out", str(out)]
    try:
        result = subprocess.run([sys.executable, "-c", ON_TWO_CORES, *args], capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired:
        pytest.fail("the two-device study-size sweep hung (XLA CPU thread-pool deadlock)")
    assert result.returncode == 0, result.stderr
    environment = json.loads((out / "config.json").read_text())["environment"]
    assert (environment["device_count"], environment["cpu_devices"]) == (2, 2)
    metrics = np.load(out / "metrics.npz")
    assert metrics["feature_diversity"].shape == (8, 2)
    assert np.all(metrics["feature_diversity"] > 1.0)  # entropy of 128 singular values, measured on every run


@pytest.mark.slow
def test_a_checkpoint_resumes_on_another_number_of_devices(tmp_path):
    # Three runs checkpointed here on one device, resumed on two (padded to four runs there).
    out = tmp_path / "run"
    out.mkdir()
    plan = sweep_plan_from_mapping(dict(m=11, hidden=8, batch_size=16, epochs=6, chunk_epochs=3, seeds=3, wds=[1e-2]),
                                   "the test")
    write_config(out / "config.json", plan, "python -m grokjax.sweep (test)")
    program = plan.programs[0]
    with pytest.raises(SweepInterrupted):
        run_sweep(program, checkpoint=out / "checkpoint.npz", stop_requested=lambda: True)
    with np.load(out / "checkpoint.npz") as checkpoint:
        assert int(checkpoint["next_epoch"]) == 3 and checkpoint["state_0"].shape[0] == 3
    result = subprocess.run([sys.executable, "-m", "grokjax.sweep", "--resume", str(out), "--cpu-devices", "2", "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    resumed, straight = np.load(out / "metrics.npz"), run_sweep(program).metrics
    for name in METRIC_NAMES:
        np.testing.assert_allclose(resumed[name], straight[name], rtol=1e-5, atol=1e-6, err_msg=name)
