"""The runs axis spread over several devices (host devices of the CPU, in a subprocess); several
processes are tested with the example that the devices guide shows (tests/test_docs.py)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from grokjax.config import SweepConfig
from grokjax.driver import run_sweep
from grokjax.results import METRIC_NAMES

CONFIG = dict(m=11, hidden=16, batch_size=16, epochs=10, chunk_epochs=5, seeds=(0, 1, 2), wds=(0.0, 1e-2))
# each run with its own samples, drawn on the device that trains it
PARITY = dict(CONFIG, task="parity", model="mlp", n_bits=10, n_samples=200)
COLLECTIVES = ("all-reduce", "all-gather", "collective-permute", "all-to-all", "reduce-scatter")

SCRIPT = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    from grokjax.config import SweepConfig
    from grokjax.devices import use_cpu_devices
    from grokjax.driver import prepare_sweep, run_sweep
    from grokjax.train import grid_hparams

    use_cpu_devices(4)
    config = SweepConfig(**{config})
    assert jax.device_count() == 4, jax.device_count()
    sweep = prepare_sweep(config, grid_hparams(config))
    text = sweep.chunk.as_text()
    print("collectives:", [name for name in {collectives} if name in text])
    print("padded runs:", len(sweep.hparams.seed), "sharding:", sweep.hparams.seed.sharding.spec)
    result = run_sweep(config)
    np.savez(sys.argv[1], **result.metrics)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("config", [CONFIG, PARITY], ids=["arithmetic", "parity"])
def test_sharded_sweep_has_no_collectives_and_equals_the_unsharded_one(tmp_path, config):
    out = tmp_path / "sharded.npz"
    script = SCRIPT.format(config=repr(config), collectives=repr(COLLECTIVES))
    result = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "collectives: []" in result.stdout
    assert "padded runs: 8 sharding: P('runs',)" in result.stdout  # 6 runs padded to 4 x 2
    sharded = np.load(out)
    alone = run_sweep(SweepConfig(**config))
    for name in METRIC_NAMES:
        assert sharded[name].shape == (6, 10)
        np.testing.assert_allclose(sharded[name], alone.metrics[name], rtol=1e-5, atol=1e-6, err_msg=name)

