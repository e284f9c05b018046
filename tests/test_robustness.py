"""Failure made cheap and visible: bad input, diverged runs, interrupt and resume, atomic files."""

import contextlib
import csv
import io
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from grokjax import sweep as sweep_command
from grokjax.config import SweepConfig
from grokjax.driver import run_sweep
from grokjax.results import METRIC_NAMES, write_atomic

TINY = ["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "6", "--seeds", "2", "--wd", "1e-2", "--quiet"]


def sweep(*args) -> subprocess.CompletedProcess:
    """The command, called in this process (no start-up, programs compiled once per test
    session): its exit status and what it printed."""
    printed, errors = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
        try:
            code = sweep_command.main(list(args))
        except SystemExit as stop:
            code = stop.code
    return subprocess.CompletedProcess(args, code, printed.getvalue(), errors.getvalue())


def sweep_process(*args, timeout=300) -> subprocess.CompletedProcess:
    """The command in a process of its own: for what changes process-wide state (float64,
    signals) or must match a killed process's device count."""
    return subprocess.run([sys.executable, "-m", "grokjax.sweep", *args], capture_output=True, text=True, timeout=timeout)


def assert_refused(result, message):
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # usage lines at most, then the one-line error


@pytest.mark.parametrize(
    "args,message",
    [
        (["--m", "2.5"], "expected comma-separated integers, got '2.5'"),
        (["--hidden", "0"], "hidden must be >= 1"),
        (["--train-frac", "0.0001"], "leaves 0 train and 9409 test pairs"),
        (["--train-frac", "0"], "train_fracs must lie strictly between 0 and 1"),
        (["--lr", "x"], "expected comma-separated numbers"),
        (["--lr", "0"], "lrs must be positive"),
        (["--op", "pow"], "op must be one of add, sub, mul, mul_nz, div, x2xyy2, s5, s5conj, s5aba, got 'pow'"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
        (["--checkpoint-minutes", "inf"], "--checkpoint-minutes must be a number of minutes > 0, got inf"),
        (["--resume", "/nonexistent/folder"], "no config.json there"),
        (["--distributed"], "--distributed needs --out"),
    ],
)
def test_bad_flags(args, message):
    assert_refused(sweep(*args), message)


@pytest.mark.parametrize(
    "content,message",
    [
        ("m = 11\nbogus = 3\n", "unknown key(s) bogus"),
        ('m = "eleven"\n', "m must be an integer, got 'eleven'"),
        ('wds = "0,1e-4"\n', "wds must be a list"),
        ("m = [", "is not valid TOML"),
        ("seeds = 0\n", "seeds must be >= 1"),
    ],
)
def test_bad_config_files_name_the_key(tmp_path, content, message):
    path = tmp_path / "sweep.toml"
    path.write_text(content)
    result = sweep("--config", str(path))
    assert_refused(result, message)
    if "TOML" not in message:
        assert str(path) in result.stderr


@pytest.mark.slow
def test_config_file_with_flag_override(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text('m = 11\nhidden = 8\nbatch_size = 16\nepochs = 4\nseeds = 2\nwds = [0.0, 1e-3]\nlrs = 1e-2\ndtype = "float64"\n')
    out = tmp_path / "run"
    result = sweep_process("--config", str(path), "--epochs", "3", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["m"], config["hidden"], config["epochs"], config["seeds"], config["wds"]) == (11, 8, 3, [0, 1], [0.0, 1e-3])
    assert np.load(out / "metrics.npz")["w1_norm"].dtype == np.float64  # the sweep turned on jax_enable_x64


@pytest.mark.slow
def test_overwrite_only_replaces_a_results_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert_refused(sweep(*TINY, "--out", str(foreign), "--overwrite"), "not a grokjax results folder")
    assert (foreign / "notes.txt").exists()
    out = tmp_path / "run"
    assert sweep(*TINY, "--out", str(out)).returncode == 0
    assert_refused(sweep(*TINY, "--out", str(out)), "already exists")
    replaced = sweep(*TINY, "--epochs", "5", "--out", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert np.load(out / "metrics.npz")["test_acc"].shape[1] == 5


@pytest.mark.slow
def test_a_diverging_run_is_frozen_and_the_others_are_untouched():
    base = dict(m=11, hidden=16, batch_size=16, epochs=12, chunk_epochs=12, optimizer="sgd", seeds=(0,), wds=(1e-2,),
                fourier_every=4)
    with_bad = run_sweep(SweepConfig(**base, lrs=(1e-2, 10.0)))
    alone = run_sweep(SweepConfig(**base, lrs=(1e-2,)))
    diverged = int(np.asarray(with_bad.state.diverged_epoch)[1])
    assert np.asarray(with_bad.state.diverged_epoch)[0] == -1 and 0 <= diverged < 12
    # frozen at its last finite state, metrics NaN from the divergence on
    for leaf in __import__("jax").tree.leaves(with_bad.state.params):
        assert np.isfinite(np.asarray(leaf)[1]).all()
    assert np.isnan(with_bad.metrics["train_loss"][1, diverged:]).all()
    assert np.isfinite(with_bad.metrics["train_loss"][1, :diverged]).all()
    for name in METRIC_NAMES:
        np.testing.assert_allclose(with_bad.metrics[name][0], alone.metrics[name][0], rtol=1e-5, atol=1e-7, err_msg=name)
    # its Fourier snapshots read NaN once it has diverged, like its metrics (snapshot k follows epoch 4k)
    diverged_at_snapshot = np.array([0, 4, 8, 12]) > diverged
    np.testing.assert_array_equal(np.isnan(with_bad.fourier["gini"][1]), diverged_at_snapshot)
    assert np.isfinite(with_bad.fourier["gini"][0]).all()


@pytest.mark.slow
def test_diverged_runs_reach_the_files_and_the_table(tmp_path):
    out = tmp_path / "run"
    result = sweep(*TINY, "--hidden", "16", "--epochs", "8", "--optimizer", "sgd", "--seeds", "2", "--wd", "1e-2",
                   "--lr", "1e-2,10", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "diverged (loss or parameters not finite; left out above): wd 0.01 lr 10: 2" in result.stdout
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["diverged_epoch"] != "" for row in rows] == [False, True, False, True]
    with open(out / "groups.csv") as f:
        groups = {row["lr"]: row for row in csv.DictReader(f)}
    assert (groups["10"]["runs"], groups["10"]["diverged"]) == ("0", "2")
    assert (groups["0.01"]["runs"], groups["0.01"]["diverged"]) == ("2", "0")


# --- interrupt and resume: real processes, killed mid-sweep ---------------------------

LONG = ["--m", "31", "--hidden", "32", "--batch-size", "32", "--epochs", "400", "--chunk-epochs", "2",
        "--seeds", "2", "--wd", "1e-3", "--quiet"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    result = sweep_process(*LONG, "--out", str(out))
    assert result.returncode == 0, result.stderr
    return np.load(out / "metrics.npz")


def start_and_stop(out, signum):
    """Start the long sweep, checkpointing by time (an interval shorter than a chunk), wait
    for its first checkpoint, then send ``signum``."""
    process = subprocess.Popen([sys.executable, "-m", "grokjax.sweep", *LONG, "--checkpoint-minutes", "1e-6", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.npz").exists():
        assert process.poll() is None and time.time() < deadline, "the sweep ended before its first checkpoint"
        time.sleep(0.01)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_kill_and_resume_matches_a_straight_run_bit_for_bit(tmp_path, straight, signum):
    out = tmp_path / "run"
    code, stderr = start_and_stop(out, signum)
    if signum != signal.SIGKILL:  # Ctrl-C, or a scheduler's SIGTERM: checkpoint, say how to resume, 128 + signal
        assert code == 128 + signum and "--resume" in stderr, stderr
    else:
        assert code == -signal.SIGKILL
    assert not (out / "metrics.npz").exists()
    with np.load(out / "checkpoint.npz") as checkpoint:
        assert 0 < int(checkpoint["next_epoch"]) < 400  # stopped mid-sweep
    resumed = sweep_process("--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and not (out / "checkpoint.npz").exists()
    final = np.load(out / "metrics.npz")
    for name in METRIC_NAMES:
        np.testing.assert_array_equal(final[name], straight[name], err_msg=name)
    assert json.loads((out / "config.json").read_text())["checkpoint"]["minutes"] == 1e-6  # the resume kept the cadence


def test_resume_refuses_another_configuration(tmp_path):
    out = tmp_path / "run"
    assert sweep(*TINY, "--out", str(out)).returncode == 0
    assert_refused(sweep("--resume", str(out), "--hidden", "16", "--epochs", "6"), "differs from the one given in hidden")
    assert_refused(sweep("--resume", str(out)), "already finished")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "summary.csv"
    write_atomic(path, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
