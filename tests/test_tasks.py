"""The S5 and corrupted-label sweeps end to end, through the command's Python API, and the
figures and tables experiments/tasks.py makes of them."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

import grokjax

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "tasks.py"
spec = importlib.util.spec_from_file_location("tasks", SCRIPT)
tasks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tasks)


def test_label_noise_sweep_summary_table_and_figure(tmp_path):
    results = grokjax.run(out=tmp_path / "noise", m=11, hidden=16, batch_size=0, lr=1e-2, wd=[0, 1e-2], label_noise=[0, 0.3],
                          seeds=2, epochs=20, chunk_epochs=10, fourier_every=10, geometry_every=0)
    summary = results.summary
    assert set(summary["noise_phase"]) <= set(tasks.NOISE_PHASES)
    clean = summary["label_noise"] == 0
    assert summary.loc[clean, "final_train_acc_corrupted"].isna().all()
    assert summary.loc[~clean, "final_train_acc_corrupted"].notna().all()
    groups = results.groups
    for _, row in groups.iterrows():
        runs = summary[(summary["label_noise"] == row["label_noise"]) & (summary["wd"] == row["wd"])]
        assert row["n_noise_coexistence"] == (runs["noise_phase"] == "coexistence").sum()
    tasks.label_noise(tmp_path / "noise", shown_noise=0.3)
    table = (tmp_path / "noise" / "label_noise.md").read_text().splitlines()
    assert table[0] == "| label noise | wd 0 | wd 0.01 |" and len(table) >= 4
    assert (tmp_path / "noise" / "label_noise.png").stat().st_size > 0


def test_s5_sweep_and_its_comparison_with_addition(tmp_path):
    common = dict(train_frac=[0.3, 0.5], wd=1e-3, seeds=2, epochs=4, chunk_epochs=2, geometry_every=0, hidden=16,
                  batch_size=32)
    grokjax.run(out=tmp_path / "s5", m=120, op=["s5", "s5aba"], **common)
    grokjax.run(out=tmp_path / "add", m=11, **common)
    tasks.s5(tmp_path / "s5", tmp_path / "add")
    table = (tmp_path / "s5" / "s5.md").read_text().splitlines()
    assert table[0] == "| training fraction | s5 | s5aba | add (m 11) |"
    groups = pd.read_csv(tmp_path / "s5" / "groups.csv")
    row = groups[(groups["op"] == "s5aba") & np.isclose(groups["train_frac"], 0.5)].iloc[0]
    assert table[3].split(" | ")[2].endswith(f"({row['generalised']}/2)")
