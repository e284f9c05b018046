import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from grokjax.results import METRIC_NAMES

TINY_ARGS = ["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "6", "--chunk-epochs", "4", "--quiet"]


def sweep(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "grokjax.sweep", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = sweep(*TINY_ARGS, "--seeds", "2", "--wd", "0,1e-2", "--lr", "1e-2,3e-3", "--out", str(out))
    assert "grokked" in result.stdout and str(out) in result.stdout
    return out


REPORT_FILES = {"summary.csv", "groups.csv", "stages.npz", "delay_fit.json", "figures"}
FIGURES = {"overview.png", "delay_vs_wd.png", "phase_diagram.png"} | {
    f"dashboard_wd{wd}_lr{lr}.png" for wd in ("0", "0.01") for lr in ("0.01", "0.003")
}


def test_cli_end_to_end(tiny_folder):
    out = tiny_folder
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.npz"} | REPORT_FILES
    assert {p.name for p in (out / "figures").iterdir()} == FIGURES

    metrics = np.load(out / "metrics.npz")
    for name in METRIC_NAMES:
        assert metrics[name].shape == (8, 6)
    np.testing.assert_array_equal(metrics["seed"], [0, 0, 0, 0, 1, 1, 1, 1])
    # the command split the CPU into one host device per usable core, at most one per run
    environment = json.loads((out / "config.json").read_text())["environment"]
    assert environment["device_count"] == environment["cpu_devices"] == min(len(os.sched_getaffinity(0)), 8)

    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert {"seed", "wd", "lr", "final_train_acc", "final_test_acc", "mem_epoch", "grok_epoch", "delay"} <= set(rows[0])
    assert rows[2]["wd"] == "0.01" and rows[1]["lr"] == "0.003"
    assert all(row["grok_epoch"] == "" for row in rows)  # 6 epochs: nobody can grok by the study's rule
    assert {"phase", "w1_peak_epoch", "events_stageII_start", "readme_stageIII_start", "script_stageI_start"} <= set(rows[0])
    with open(out / "groups.csv") as f:
        groups = list(csv.DictReader(f))
    assert [(g["wd"], g["lr"], g["runs"]) for g in groups] == [
        ("0", "0.003", "2"), ("0", "0.01", "2"), ("0.01", "0.003", "2"), ("0.01", "0.01", "2")]
    with np.load(out / "stages.npz") as stages:
        assert {name: stages[name].shape for name in stages.files} == dict.fromkeys(("events", "readme", "script"), (8, 6))

    record = json.loads((out / "config.json").read_text())
    assert record["config"]["wds"] == [0.0, 0.01] and record["config"]["epochs"] == 6
    assert record["derived"]["n_train"] == 60 and record["derived"]["steps_per_epoch"] == 4
    assert record["environment"]["backend"] == "cpu" and record["environment"]["versions"]["jax"]
    assert record["timing"]["train_seconds"] > 0
    assert record["command"].startswith("python -m grokjax.sweep --m 11")


def test_report_redraws_a_folder_without_training(tiny_folder, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "metrics.npz"):
        (copy / name).write_bytes((tiny_folder / name).read_bytes())
    result = subprocess.run([sys.executable, "-m", "grokjax.report", str(copy)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "grokked" in result.stdout
    assert {p.name for p in copy.iterdir()} == {"config.json", "metrics.npz"} | REPORT_FILES
    assert {p.name for p in (copy / "figures").iterdir()} == FIGURES
    assert (copy / "summary.csv").read_text() == (tiny_folder / "summary.csv").read_text()
    assert (copy / "groups.csv").read_text() == (tiny_folder / "groups.csv").read_text()
    assert all((copy / "figures" / name).stat().st_size > 10_000 for name in FIGURES)


def test_report_rejects_a_folder_that_is_not_a_sweep(tmp_path):
    result = subprocess.run([sys.executable, "-m", "grokjax.report", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "has no config.json" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--m", "1"], "m must be >= 2"),
        (["--train-frac", "1.5"], "train_fracs must lie strictly between 0 and 1"),
        (["--wd=-1e-4"], "wds must be non-negative"),
        (["--wd", "abc"], "expected comma-separated numbers"),
        (["--batch-size", "100000"], "exceeds the 4704 training pairs"),
        (["--optimizer", "rmsprop"], "optimizer must be one of adam, adamw, sgd"),
        (["--op", "div", "--m", "12"], "needs a prime m"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--seeds", "0"], "seeds must be >= 1"),
        (["--fourier-every", "-1"], "fourier_every must be >= 0"),
        (["--preset", "li3"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_input(args, message):
    result = sweep(*args, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_refuses_an_existing_results_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("earlier results")
    result = sweep(*TINY_ARGS, "--out", str(tmp_path), check=False)
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (tmp_path / "keep.txt").read_text() == "earlier results"
