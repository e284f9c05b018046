"""Checkpoints: written by time (or every N chunks), always at an interruption, never after
the last chunk; streamed to disk without a second copy of the state in memory; their size
known before training."""

import json
import tempfile
import tracemalloc
from pathlib import Path

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
    reads = iter(range(1000))
    cadence = CheckpointCadence(minutes=2.5, clock=lambda: 60.0 * next(reads))  # a minute passes each time it is read
    result = run_sweep(TINY, checkpoint=tmp_path / "checkpoint.npz", cadence=cadence)
    # read at the start (0), after chunks 1, 2 (minutes 1, 2: not yet) and 3 (3: saved, epoch 6; the save reads 4),
    # after chunks 4, 5, 6 (5, 6, 7: saved, epoch 12; reads 8) and 7 (9); the eighth and last chunk (epoch 16) saves
    # nothing: the results are written instead
    assert saved == [6, 12] and result.checkpoints_written == 2

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
    save_checkpoint(tmp_path / "checkpoint.npz", leaves, history, 10, "hash", n_runs=1000)  # 24 rows of padding dropped
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # beyond the state itself: numpy's 16 MiB write buffer at most, where an in-memory archive would add 2x the size
    assert peak < 0.3 * size, f"{peak / 2**20:.0f} MiB allocated while writing {size / 2**20:.0f} MiB"
    shapes = [np.zeros((1000, 4096), np.float32)] * 4
    restored, restored_history, next_epoch = load_checkpoint(tmp_path / "checkpoint.npz", shapes, history, "hash")
    assert next_epoch == 10 and all(np.array_equal(a, b[:1000]) for a, b in zip(restored, leaves))
    assert np.array_equal(restored_history["train_loss"], history["train_loss"])


def test_a_padded_sweep_resumes_from_its_checkpoint_exactly():
    # 3 runs in groups of 2: a fourth, padding run trains beside them and is left out of the checkpoint
    config = SweepConfig(m=11, hidden=8, batch_size=16, epochs=8, chunk_epochs=2, seeds=(0, 1, 2), wds=(1e-2,),
                         run_group=2, fourier_every=4)
    straight = run_sweep(config)
    calls = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.npz"
        with pytest.raises(SweepInterrupted):
            run_sweep(config, checkpoint=path, cadence=CheckpointCadence(minutes=1e9),
                      stop_requested=lambda: calls.append(1) or len(calls) >= 2)
        with np.load(path) as saved:
            assert saved["state_0"].shape[0] == 3 and int(saved["next_epoch"]) == 4
        resumed = run_sweep(config, checkpoint=path)
    for name, values in straight.metrics.items():
        np.testing.assert_array_equal(resumed.metrics[name], values, err_msg=name)
    for name, values in straight.fourier.items():
        np.testing.assert_array_equal(resumed.fourier[name], values, err_msg=name)


def test_the_sweep_states_its_checkpoints_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert sweep.main(["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "4", "--seeds", "2", "--quiet",
                       "--checkpoint-minutes", "2", "--out", str(out)]) == 0
    record = json.loads((out / "config.json").read_text())["checkpoint"]
    assert record["minutes"] == 2 and record["every_chunks"] is None
    assert record["bytes"] == checkpoint_bytes(SweepConfig(m=11, hidden=8, batch_size=16, epochs=4, seeds=(0, 1)))
    line = capsys.readouterr().out.splitlines()[1]
    assert record["bytes"] < 2**20 and line.startswith(f"checkpoints: {record['bytes'] / 2**10:.1f} KiB each")
    assert "once 2 min" in line
