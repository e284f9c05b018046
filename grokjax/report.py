"""``python -m grokjax.report DIR``: write a sweep folder's analysis files and figures
from its ``metrics.npz``, without training. The sweep calls :func:`write_report` itself;
run this to redraw with other thresholds or stage rules.

Writes into DIR: ``summary.csv`` (per run), ``groups.csv`` (per wd, lr),
``stages.npz`` (per-epoch stage labels under every rule set), ``delay_fit.json`` and
``figures/*.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np

from grokjax import analysis, plots
from grokjax.config import STAGE3_EVENTS, STAGE_RULES, AnalysisConfig, ConfigError, OneLineErrorParser
from grokjax.metrics import METRIC_NAMES
from grokjax.results import write_atomic, write_csv
from grokjax.train import Hparams


def load_sweep(folder: Path) -> tuple[dict, Hparams, dict[str, np.ndarray]]:
    """The configuration record, per-run coordinates and metric arrays of a results folder
    (folders from before per-run training-set sizes get the configuration's size)."""
    folder = Path(folder)
    for name in ("config.json", "metrics.npz"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} has no {name}: not a grokjax results folder")
    record = json.loads((folder / "config.json").read_text())
    with np.load(folder / "metrics.npz") as data:
        missing = [name for name in (*METRIC_NAMES, *Hparams._fields) if name not in data.files and name != "n_train"]
        if missing:
            raise ValueError(f"{folder / 'metrics.npz'} lacks {', '.join(missing)}")
        metrics = {name: data[name] for name in METRIC_NAMES}
        n_train = data["n_train"] if "n_train" in data.files else np.full(len(data["seed"]), record["derived"]["n_train"])
        hparams = Hparams(*(n_train if name == "n_train" else data[name] for name in Hparams._fields))
    return record, hparams, metrics


def load_fourier(folder: Path) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """A results folder's Fourier snapshots (epochs, arrays), or None without fourier.npz."""
    path = Path(folder) / "fourier.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["epochs"], {name: data[name] for name in data.files if name != "epochs"}


def sweep_title(config: dict) -> str:
    batch = config["batch_size"] or "full"
    network = "" if config.get("model", "modularnet") == "modularnet" else f"{config['model']} "
    extras = "".join(f", {config[key]}" for key, default in (("activation", "relu"), ("loss", "ce"))
                     if config.get(key, default) != default)
    return f"m={config['m']} {config['op']}, {network}hidden {config['hidden']}{extras}, {config['optimizer']}, batch {batch}"


def representative_runs(summary: dict[str, np.ndarray], rows: list[dict]) -> list[int]:
    """One run per (wd, lr): the one whose grokking epoch is nearest the group's median,
    or the group's first run when none grokked."""
    chosen = []
    for row in rows:
        members = np.flatnonzero((summary["wd"] == row["wd"]) & (summary["lr"] == row["lr"]))
        grok = summary["grok_epoch"][members]
        if row["grokked"]:
            chosen.append(int(members[np.nanargmin(np.abs(grok - row["grok_median"]))]))
        else:
            chosen.append(int(members[0]))
    return chosen


def save_figure(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_atomic(path, buffer.getvalue())


def write_report(
    folder: Path, config: dict, hparams: Hparams, metrics: dict[str, np.ndarray], cfg: AnalysisConfig = analysis.DEFAULT
) -> tuple[dict, list[dict], dict | None]:
    """Analyse a sweep's metrics and write the tables, stage labels, fit and figures (with
    a Fourier figure per representative run when the folder has snapshots)."""
    folder = Path(folder)
    fourier = load_fourier(folder)
    summary = analysis.run_summary(hparams, metrics, cfg)
    rows = analysis.group_summary(summary, cfg)
    fit = analysis.delay_power_law(summary, metrics["test_acc"].shape[1], cfg)
    labels = {rules: analysis.stage_labels(metrics, rules, cfg) for rules in STAGE_RULES}

    write_csv(folder / "summary.csv", summary)
    write_csv(folder / "groups.csv", {key: [row[key] for row in rows] for key in rows[0]})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **labels)
    write_atomic(folder / "stages.npz", buffer.getvalue())
    write_atomic(folder / "delay_fit.json", (json.dumps({"fit": fit, "analysis": dataclasses.asdict(cfg)}, indent=2) + "\n").encode())

    figures = folder / "figures"
    figures.mkdir(exist_ok=True)
    title = sweep_title(config)
    for run in representative_runs(summary, rows):
        wd, lr, seed = summary["wd"][run], summary["lr"][run], summary["seed"][run]
        fig = plots.dashboard(
            {name: values[run] for name, values in metrics.items()},
            labels[cfg.stage_rules][run],
            summary["grok_epoch"][run],
            summary["mem_epoch"][run],
            f"{title}; wd {wd:g}, lr {lr:g}, seed {seed} (run {run})",
            cfg.stage_rules,
            "centred MSE" if config.get("loss") == "mse" else "cross-entropy",
        )
        save_figure(fig, figures / f"dashboard_wd{wd:g}_lr{lr:g}.png")
        if fourier is not None:
            snapshot_epochs, snapshots = fourier
            shown = analysis.fourier_moments(snapshot_epochs, metrics["test_acc"][run], summary["mem_epoch"][run])
            fig = plots.fourier_features(
                np.arange(1, metrics["test_acc"].shape[1] + 1), snapshot_epochs,
                {name: values[run] for name, values in snapshots.items()}, shown, metrics["test_acc"][run],
                f"{title}; wd {wd:g}, lr {lr:g}, seed {seed} (run {run}): Fourier features of the hidden layer",
            )
            save_figure(fig, figures / f"fourier_wd{wd:g}_lr{lr:g}.png")
    save_figure(plots.overview(metrics["test_acc"], summary["wd"], summary["lr"], title), figures / "overview.png")
    if (summary["wd"] > 0).any():
        save_figure(plots.delay_vs_wd(summary, rows, fit, title), figures / "delay_vs_wd.png")
    if len(np.unique(summary["wd"])) >= 2 and len(np.unique(summary["lr"])) >= 2:
        save_figure(plots.phase_diagram(rows, title), figures / "phase_diagram.png")
    return summary, rows, fit


def build_parser() -> argparse.ArgumentParser:
    d = analysis.DEFAULT
    parser = OneLineErrorParser(
        prog="python -m grokjax.report",
        description="Re-analyse a grokjax results folder and redraw its figures, without training.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("folder", help="a results folder written by python -m grokjax.sweep")
    parser.add_argument("--stage-rules", choices=STAGE_RULES, default=d.stage_rules, help="rules that shade the dashboards")
    parser.add_argument("--stage3-event", choices=STAGE3_EVENTS, default=d.stage3_event, help="what starts Stage III under the events rules")
    parser.add_argument("--grok-threshold", type=float, default=d.grok_threshold, help="test accuracy that counts as generalised")
    parser.add_argument("--grok-min-index", type=int, default=d.grok_min_index, help="earliest 0-based epoch index of a grokking crossing")
    parser.add_argument("--grok-window", type=int, default=d.grok_window, help="epochs test accuracy must hold above the threshold")
    parser.add_argument("--mem-threshold", type=float, default=d.mem_threshold, help="train accuracy that counts as memorised")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = AnalysisConfig(
            stage_rules=args.stage_rules,
            stage3_event=args.stage3_event,
            grok_threshold=args.grok_threshold,
            grok_min_index=args.grok_min_index,
            grok_window=args.grok_window,
            mem_threshold=args.mem_threshold,
        )
        record, hparams, metrics = load_sweep(Path(args.folder))
        config = record["config"]
    except KeyError as error:
        parser.exit(2, f"{parser.prog}: error: {args.folder}/config.json lacks the key {error}\n")
    except (ConfigError, FileNotFoundError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    _, rows, fit = write_report(Path(args.folder), config, hparams, metrics, cfg)
    print(analysis.format_group_table(rows, fit))
    print(f"\nwrote summary.csv, groups.csv, stages.npz, delay_fit.json and figures/ in {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
