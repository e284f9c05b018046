"""Checkpoints: written by time (or every N chunks), always at an interruption, never after
the last chunk; streamed to disk without a second copy of the state in memory; their size
known before training."""

import json
import tracemalloc

import numpy as np
import pytest

from grokjax import driver, sweep
from grokjax.config import SweepConfig
from grokjax.driver import CheckpointCadence, SweepInterrupted, checkpoint_bytes, run_sweep
from grokjax.results import load_checkpoint, save_checkpoint

TINY = SweepConfig(m=11, hidden=8, batch_size=16, epochs=16, chunk_epochs=2, seeds=(0, 1), wds=(0.0, 1e-2))


def saves_of(monkeypatch) -> list[int]:
    """The next epoch of every checkpoint run_sweep saves from now on."""
    saved = []
    real = driver.save_checkpoint

    def recording(path, leaves, history, next_epoch, *args):
        saved.append(next_epoch)
        real(path, leaves, history, next_epoch, *args)

    monkeypatch.setattr(driver, "save_checkpoint", recording)
    return saved


def test_a_checkpoint_once_the_interval_has_passed_at_an_interruption_and_never_at_the_end(tmp_path, monkeypatch):
    saved = saves_of(monkeypatch)
    now = [0.0]

    def two_minutes_a_chunk():  # asked once at the end of every chunk, before the cadence is
        now[0] += 120.0
        return False

    cadence = CheckpointCadence(minutes=5, clock=lambda: now[0])
    run_sweep(TINY, checkpoint=tmp_path / "checkpoint.npz", cadence=cadence, stop_requested=two_minutes_a_chunk)
    # minutes 2, 4: not yet; 6: saved after the third chunk (epoch 6); 8, 10 not; 12: saved (epoch 12);
    # the eighth and last chunk (epoch 16) saves nothing: the results are written instead
    assert saved == [6, 12]

    saved.clear()
    run_sweep(TINY, checkpoint=tmp_path / "every.npz", cadence=CheckpointCadence(minutes=1e9, every_chunks=3))
    assert saved == [6, 12]  # every third chunk, by count alone

    saved.clear()
    calls = []
    with pytest.raises(SweepInterrupted):
        run_sweep(TINY, checkpoint=tmp_path / "stopped.npz", cadence=CheckpointCadence(minutes=1e9),
                  stop_requested=lambda: calls.append(1) or len(calls) >= 2)
    assert saved == [4]  # no interval had passed, but an interruption always saves


def test_the_checkpoint_size_is_known_before_training(tmp_path):
    config = SweepConfig(m=11, hidden=8, batch_size=16, epochs=6, chunk_epochs=2, seeds=(0, 1, 2), wds=(0.0, 1e-2),
                         optimizer="muon", fourier_every=2)
    calls = []
    with pytest.raises(SweepInterrupted):
        run_sweep(config, checkpoint=tmp_path / "checkpoint.npz", stop_requested=lambda: calls.append(1) or True)
    predicted, written = checkpoint_bytes(config), (tmp_path / "checkpoint.npz").stat().st_size
    with np.load(tmp_path / "checkpoint.npz") as archive:
        n_arrays = len(archive.files)
    assert predicted < written < predicted + 300 * n_arrays  # the archive's own headers: under 300 bytes per array


def test_writing_a_checkpoint_holds_no_second_copy_of_the_state(tmp_path):
    # a 1,024-run sweep of the study's network holds about 0.8 MB of state per run; 64 MB here
    rng = np.random.default_rng(0)
    leaves = [rng.standard_normal((1024, 4096), np.float32) for _ in range(4)]
    history = {"train_loss": rng.standard_normal((1024, 4000), np.float32)}
    size = sum(x.nbytes for x in [*leaves, *history.values()])
    tracemalloc.start()
    save_checkpoint(tmp_path / "checkpoint.npz", leaves, history, 10, "hash")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # beyond the state itself: numpy's 16 MiB write buffer at most, where an in-memory archive would add 2x the size
    assert peak < 0.3 * size, f"{peak / 2**20:.0f} MiB allocated while writing {size / 2**20:.0f} MiB"
    shapes = [np.zeros((1024, 4096), np.float32)] * 4
    restored, restored_history, next_epoch = load_checkpoint(tmp_path / "checkpoint.npz", shapes, history, "hash")
    assert next_epoch == 10 and all(np.array_equal(a, b) for a, b in zip(restored, leaves))
    assert np.array_equal(restored_history["train_loss"], history["train_loss"])


def test_the_sweep_states_its_checkpoints_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert sweep.main(["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "4", "--seeds", "2", "--quiet",
                       "--checkpoint-minutes", "2", "--out", str(out)]) == 0
    record = json.loads((out / "config.json").read_text())["checkpoint"]
    assert record["minutes"] == 2 and record["every_chunks"] is None
    assert record["bytes"] == checkpoint_bytes(SweepConfig(m=11, hidden=8, batch_size=16, epochs=4, seeds=(0, 1)))
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith(f"checkpoints: {record['bytes'] / 2**20:.1f} MiB each") and "once 2 min" in line
