"""``python -m grokjax.export DIR --format study --out OUT``: a results folder in another
tool's file format, so that its scripts run on grokjax's results unchanged.

``study``: the PyTorch study's files. Per run ``grok_mod_full_m{m}_hd{h}_lr{lr}_wd{wd}_hist.json``
(its history keys, one value per epoch) and the combined ``grokking_all_full_hist.json``,
``{"hist": {key: history}, "grok_pt": {key: 0-based index or null}}`` with keys like
``m97_hd128_lr0.001_wd0.0001`` (Python's ``str`` of each float, as the study writes them).
A folder with several seeds adds ``_seed{s}`` to every key, and one that varies any
other axis adds ``_{axis}{value}`` for each (``_optimizeradamw``, ``_train_frac0.3``), so
that every run has its own file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from grokjax import analysis
from grokjax.cli import OneLineErrorParser
from grokjax.config import varied_axes
from grokjax.report import load_sweep
from grokjax.results import new_results_dir, write_atomic

# The study's history keys and the grokjax metric each holds, in the study's order.
STUDY_HISTORY_KEYS = {
    "train_loss": "train_loss",
    "train_acc": "train_acc",
    "test_loss": "test_loss",
    "test_acc": "test_acc",
    "w_norm_fc1": "w1_norm",
    "delta_w_norm_fc1": "w1_delta_norm",
    "grad_norm_fc1": "grad_norm",
    "grad_cosine_sim": "grad_cosine_sim",
    "feature_diversity": "feature_diversity",
    "node_similarity_mean": "node_similarity",  # the study's later script
}
# What the PyTorch reference records: the study's keys and grokjax's neuron_grad_cosine.
STUDY_KEYS = {**STUDY_HISTORY_KEYS, "neuron_grad_cosine": "neuron_grad_cosine"}
FORMATS = ("study",)


def study_float(value) -> str:
    """A stored hyperparameter as the study's keys spell it: Python's ``str`` of the value
    as configured (float32 storage rounded back to 7 digits: 1e-4 -> '0.0001')."""
    return str(float(format(float(value), ".7g")))


def study_run_keys(config: dict, coordinates: dict[str, np.ndarray]) -> list[str]:
    """Every run's key, ``m97_hd128_lr0.001_wd0.0001`` plus the suffixes the module describes."""
    n_runs = len(coordinates["seed"])

    def value(name):
        return coordinates[name] if name in coordinates else np.full(n_runs, config[name])

    m, hidden = value("m"), value("hidden")
    several_seeds = len(np.unique(coordinates["seed"])) > 1
    others = [axis for axis in varied_axes(config) if axis not in ("m", "hidden", "wd", "lr")]
    keys = []
    for run in range(n_runs):
        key = f"m{int(m[run])}_hd{int(hidden[run])}_lr{study_float(coordinates['lr'][run])}_wd{study_float(coordinates['wd'][run])}"
        if several_seeds:
            key += f"_seed{int(coordinates['seed'][run])}"
        key += "".join(f"_{axis}{analysis.format_value(coordinates[axis][run])}" for axis in others)
        keys.append(key)
    return keys


def study_histories(metrics: dict[str, np.ndarray], run: int) -> dict[str, list[float]]:
    """One run's history in the study's keys; epochs without a measurement read NaN."""
    return {key: [float(v) for v in metrics[name][run]] for key, name in STUDY_HISTORY_KEYS.items()}


def export_study(config: dict, coordinates: dict[str, np.ndarray], metrics: dict[str, np.ndarray], out: Path) -> list[str]:
    """Write the study's files for every run of a results folder (its configuration record,
    coordinates and metrics, as :func:`grokjax.report.load_sweep` reads them) into ``out``;
    returns the run keys."""
    keys = study_run_keys(config, coordinates)
    grok = analysis.grok_epoch(analysis.held_test_metrics(metrics)["test_acc"])  # --eval-every: NaN between measurements
    combined = {"hist": {}, "grok_pt": {}}
    for run, key in enumerate(keys):
        history = study_histories(metrics, run)
        write_atomic(out / f"grok_mod_full_{key}_hist.json", json.dumps(history).encode())
        combined["hist"][key] = history
        combined["grok_pt"][key] = None if np.isnan(grok[run]) else int(grok[run]) - 1  # the study's 0-based index
    write_atomic(out / "grokking_all_full_hist.json", json.dumps(combined).encode())
    return keys


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m grokjax.export",
        description="Write a grokjax results folder in another tool's file format.",
    )
    parser.add_argument("folder", help="a results folder written by python -m grokjax.sweep")
    parser.add_argument("--format", choices=FORMATS, default="study",
                        help="study: the PyTorch study's per-run *_hist.json files and grokking_all_full_hist.json")
    parser.add_argument("--out", required=True, help="folder for the exported files (must not exist or be empty)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        record, coordinates, metrics = load_sweep(Path(args.folder))  # refused before anything is written
        if record["config"].get("task", "arithmetic") != "arithmetic":
            raise ValueError(f"the study's files hold (a op b) mod m runs; {args.folder} trains the "
                             f"{record['config']['task']} task")
        out = new_results_dir(args.out)
    except (FileExistsError, FileNotFoundError, ValueError) as error:  # DamagedFile is a ValueError
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    keys = export_study(record["config"], coordinates, metrics, out)
    print(f"wrote {len(keys)} run histories and grokking_all_full_hist.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
