import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from grokjax.metrics import METRIC_NAMES

TINY_ARGS = ["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "6", "--chunk-epochs", "4", "--quiet"]


def sweep(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "grokjax.sweep", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "run"
    result = sweep(*TINY_ARGS, "--seeds", "2", "--wd", "0,1e-2", "--lr", "1e-2,3e-3", "--out", str(out))
    assert "grokked" in result.stdout and str(out) in result.stdout
    assert {p.name for p in out.iterdir()} == {"config.json", "metrics.npz", "summary.csv"}

    metrics = np.load(out / "metrics.npz")
    for name in METRIC_NAMES:
        assert metrics[name].shape == (8, 6)
    np.testing.assert_array_equal(metrics["seed"], [0, 0, 0, 0, 1, 1, 1, 1])

    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    assert {"seed", "wd", "lr", "final_train_acc", "final_test_acc", "mem_epoch", "grok_epoch", "delay"} <= set(rows[0])
    assert rows[2]["wd"] == "0.01" and rows[1]["lr"] == "0.003"
    assert all(row["grok_epoch"] == "" for row in rows)  # 6 epochs: nobody can grok by the study's rule

    record = json.loads((out / "config.json").read_text())
    assert record["config"]["wds"] == [0.0, 0.01] and record["config"]["epochs"] == 6
    assert record["derived"]["n_train"] == 60 and record["derived"]["steps_per_epoch"] == 4
    assert record["environment"]["backend"] == "cpu" and record["environment"]["versions"]["jax"]
    assert record["timing"]["train_seconds"] > 0
    assert record["command"].startswith("python -m grokjax.sweep --m 11")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--m", "1"], "m must be >= 2"),
        (["--train-frac", "1.5"], "train_frac must lie strictly between 0 and 1"),
        (["--wd=-1e-4"], "wds must be non-negative"),
        (["--wd", "abc"], "expected comma-separated numbers"),
        (["--batch-size", "100000"], "exceeds the 4704 training pairs"),
        (["--optimizer", "rmsprop"], "invalid choice"),
        (["--op", "div", "--m", "12"], "needs a prime m"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--seeds", "0"], "--seeds must be >= 1"),
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
