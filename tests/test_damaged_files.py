"""A damaged results folder gets one line and exit status 2, never a traceback, and is left
as it was; a damaged checkpoint falls back to the one before it."""

import contextlib
import io
import json
import shutil

import numpy as np
import pytest

from grokjax import export, report, sweep
from grokjax.config import SweepConfig
from grokjax.driver import CheckpointCadence, SweepInterrupted, run_sweep
from grokjax.files import DamagedFile, read_npz
from grokjax.results import METRIC_NAMES, previous_checkpoint

STOPPED = SweepConfig(m=11, hidden=8, batch_size=16, epochs=6, chunk_epochs=2, seeds=(0, 1), wds=(0.0, 1e-2),
                      fourier_every=2)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, two_program_folder):
    """A finished sweep (two programs; a stand-in fourier.npz), and the checkpoints of one
    stopped after its second chunk of three (checkpoint.npz after the second,
    checkpoint.previous.npz after the first)."""
    root = tmp_path_factory.mktemp("damaged")
    shutil.copytree(two_program_folder, root / "done")
    shutil.copy(root / "done" / "metrics.npz", root / "done" / "fourier.npz")  # only ever read damaged here
    (root / "stopped").mkdir()
    checkpoint = root / "stopped" / "checkpoint.npz"
    with pytest.raises(SweepInterrupted):  # a checkpoint after each chunk; stop once the second is written
        run_sweep(STOPPED, checkpoint=checkpoint, cadence=CheckpointCadence(every_chunks=1),
                  stop_requested=lambda: previous_checkpoint(checkpoint).exists())
    return root


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def truncate(path):
    path.write_bytes(path.read_bytes()[:20])


def garbage(path):
    path.write_bytes(b"\x00\x13garbage, not what grokjax wrote" * 3)


def wrong_shape(path):
    arrays = dict(np.load(path))
    arrays["test_acc"] = arrays["test_acc"][:, :3]
    np.savez(path, **arrays)


def missing_key(path):
    arrays = dict(np.load(path))
    del arrays["w1_norm"]
    np.savez(path, **arrays)


def edited_config(path):
    record = json.loads(path.read_text())
    del record["derived"]
    path.write_text(json.dumps(record))


FOLDER_DAMAGE = [
    ("metrics.npz", truncate, "metrics.npz is not a readable NumPy archive"),
    ("metrics.npz", garbage, "metrics.npz is not a readable NumPy archive"),
    ("metrics.npz", wrong_shape, "metrics.npz: test_acc has shape [8, 3]; expected it to start with [8, 6]"),
    ("metrics.npz", missing_key, "metrics.npz lacks w1_norm"),
    ("config.json", truncate, "config.json is not valid JSON"),
    ("config.json", edited_config, "config.json lacks 'derived'"),
]


@pytest.mark.parametrize("command,name,damage,message", [
    *(("report", *case) for case in FOLDER_DAMAGE),
    ("report", "fourier.npz", truncate, "fourier.npz is not a readable NumPy archive"),
    *(("export", *case) for case in FOLDER_DAMAGE),  # the export reads no Fourier snapshots
])
def test_a_damaged_results_folder_gets_one_line(folders, tmp_path, capsys, command, name, damage, message):
    folder = tmp_path / "copy"
    shutil.copytree(folders / "done", folder)
    damage(folder / name)
    before = snapshot(folder)
    main, args = (report.main, [str(folder)]) if command == "report" else (export.main, [str(folder), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit) as stopped:
        main(args)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert snapshot(folder) == before and not (tmp_path / "x").exists()


@pytest.mark.parametrize("damage,message", [
    (truncate, "config.json is not valid JSON"),
    (lambda path: path.write_text('{"no_config": 1}'), "config.json lacks its 'config' object"),
])
def test_resume_with_a_damaged_config_gets_one_line(folders, tmp_path, capsys, damage, message):
    folder = tmp_path / "copy"
    shutil.copytree(folders / "done", folder)
    (folder / "metrics.npz").unlink()  # an unfinished sweep
    damage(folder / "config.json")
    before = snapshot(folder)
    with pytest.raises(SystemExit) as stopped:
        sweep.main(["--resume", str(folder)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert snapshot(folder) == before


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(folders, tmp_path, capsys):
    stopped = tmp_path / "stopped"
    shutil.copytree(folders / "stopped", stopped)
    checkpoint = stopped / "checkpoint.npz"
    assert previous_checkpoint(checkpoint).exists()  # the first chunk's, kept when the second was written
    truncate(checkpoint)
    config = STOPPED
    resumed = run_sweep(config, checkpoint=checkpoint)
    err = capsys.readouterr().err
    assert "warning: " in err and "checkpoint.npz is not a readable NumPy archive" in err
    assert "resuming from the previous checkpoint, checkpoint.previous.npz" in err
    straight = run_sweep(config)
    for name in METRIC_NAMES:
        np.testing.assert_array_equal(resumed.metrics[name], straight.metrics[name], err_msg=name)
    for name, values in straight.fourier.items():
        np.testing.assert_array_equal(resumed.fourier[name], values, err_msg=name)


def test_both_checkpoints_damaged_say_how_to_proceed(folders, tmp_path):
    stopped = tmp_path / "stopped"
    shutil.copytree(folders / "stopped", stopped)
    checkpoint = stopped / "checkpoint.npz"
    garbage(checkpoint)
    truncate(previous_checkpoint(checkpoint))
    config = STOPPED
    with pytest.raises(DamagedFile, match="delete both to restart this sweep from its first epoch"):
        run_sweep(config, checkpoint=checkpoint)


def test_a_checkpoint_with_a_wrong_shape_is_damaged(folders, tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    arrays = read_npz(folders / "stopped" / "checkpoint.npz")
    arrays["metric_test_acc"] = arrays["metric_test_acc"][:1]
    np.savez(checkpoint, **arrays)
    config = STOPPED
    with pytest.raises(DamagedFile, match=r"test_acc has shape \[1, 6\], expected \[4, 6\].*no previous checkpoint"):
        run_sweep(config, checkpoint=checkpoint)


def test_resume_with_a_damaged_checkpoint_gets_one_line(folders, tmp_path, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(folders / "done", folder)
    (folder / "metrics.npz").unlink()  # an unfinished sweep whose only checkpoint is damaged
    garbage(folder / "checkpoint-0.npz")  # the first of its two programs
    before = snapshot(folder)
    with contextlib.redirect_stdout(io.StringIO()):
        assert sweep.main(["--resume", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m grokjax.sweep: error: {folder / 'checkpoint-0.npz'} is not a readable NumPy archive "
                   "(it does not start like a .npz file); it may be truncated or damaged; there is no previous checkpoint "
                   "to fall back to: delete checkpoint-0.npz to restart this sweep from its first epoch"]
    assert snapshot(folder) == before


def test_a_checkpoint_of_another_configuration_gets_one_line(folders, tmp_path, capsys):
    """A checkpoint whose configuration hash differs (say, written by an earlier grokjax whose
    configuration had fewer fields): one line saying what to do, nothing changed."""
    folder = tmp_path / "copy"
    shutil.copytree(folders / "done", folder)
    (folder / "metrics.npz").unlink()
    shutil.copy(folders / "stopped" / "checkpoint.npz", folder / "checkpoint-0.npz")  # another configuration's
    before = snapshot(folder)
    with contextlib.redirect_stdout(io.StringIO()):
        assert sweep.main(["--resume", str(folder)]) == 2
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "checkpoint-0.npz was written for another configuration or by another grokjax version" in err
    assert err.endswith("delete checkpoint-0.npz to restart this sweep from its first epoch")
    assert snapshot(folder) == before
