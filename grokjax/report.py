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
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure

from grokjax import analysis, plots
from grokjax.cli import OneLineErrorParser
from grokjax.config import (
    STAGE3_EVENTS,
    STAGE_RULES,
    AnalysisConfig,
    ConfigError,
    SweepPlan,
    varied_axes,
)
from grokjax.files import DamagedFile, check_shape, read_json, read_npz, require_arrays
from grokjax.results import (
    LATER_METRICS,
    METRIC_NAMES,
    partial_files,
    remove_partial_files,
    save_figure,
    write_atomic,
    write_config,
    write_csv,
    write_fourier,
    write_metrics,
)

BASE_COORDINATES = ("seed", "data_seed", "wd", "lr")  # in every metrics.npz; n_train since per-run sizes


def load_sweep(folder: Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The configuration record, per-run coordinates and metric arrays of a results folder
    (folders from before per-run training-set sizes get the configuration's size).
    FileNotFoundError saying why when the folder holds no finished sweep; DamagedFile when
    a file is unreadable or its arrays disagree with config.json."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a grokjax results folder")
    unfinished = partial_files(folder)
    if unfinished:
        raise FileNotFoundError(f"{folder}: its sweep has not finished ({', '.join(p.name for p in unfinished)} there); "
                                f"continue it with python -m grokjax.sweep --resume {folder}")
    record = read_json(path)
    if not (folder / "metrics.npz").is_file():
        why = ("it is not a sweep's folder (its config.json was written by something else, an experiment's script?)"
               if "derived" not in record else "its sweep did not finish, or the file was not kept")
        raise FileNotFoundError(f"{folder} has no metrics.npz: {why}")
    try:
        config, n_runs, n_epochs = record["config"], record["derived"]["n_runs"], record["config"]["epochs"]
    except (KeyError, TypeError) as error:
        raise DamagedFile(f"{path} lacks {error}; it may have been edited") from None
    axes = [axis for axis in varied_axes(config) if axis not in BASE_COORDINATES]
    path = folder / "metrics.npz"
    data = read_npz(path, (*(name for name in METRIC_NAMES if name not in LATER_METRICS), *BASE_COORDINATES, *axes))
    metrics = {name: data[name] if name in data else np.full((n_runs, n_epochs), np.nan, np.float32) for name in METRIC_NAMES}
    coordinates = {name: data[name] for name in (*BASE_COORDINATES, *axes)}
    coordinates["n_train"] = data["n_train"] if "n_train" in data else np.full(n_runs, record["derived"].get("n_train", 0))
    for name, values in metrics.items():
        check_shape(path, name, values, (n_runs, n_epochs))
    for name, values in coordinates.items():
        check_shape(path, name, values, (n_runs,))
    return record, coordinates, metrics


# what fourier.npz holds: the hidden neurons' Fourier features (modularnet, li2), or a
# transformer's embedding and progress measures
NEURON_SNAPSHOT = ("spectrum", "dominant_frequency", "concentration", "mean_concentration", "distinct_frequencies",
                   "gini", "gf_norm")
PROGRESS_SNAPSHOT = ("embedding_norm", "gini", "key_frequency", "n_key_frequencies", "restricted_loss", "excluded_loss")


def load_fourier(folder: Path, n_runs: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """A results folder's Fourier snapshots (epochs, arrays), or None without fourier.npz."""
    path = Path(folder) / "fourier.npz"
    if not path.is_file():
        return None
    data = read_npz(path, ("epochs",))
    require_arrays(path, data, PROGRESS_SNAPSHOT if "embedding_norm" in data else NEURON_SNAPSHOT)
    epochs = data.pop("epochs")
    for name, values in data.items():
        check_shape(path, name, values, (n_runs, len(epochs)))
    return epochs, data


def sweep_title(config: dict) -> str:
    """One line of the settings shared by a sweep's runs; a static axis shows its values (32/64/128)."""

    def show(key, default=None):
        values = config.get(key, default)
        values = values if isinstance(values, list) else [values]
        return "/".join("full" if key == "batch_size" and v == 0 else str(v) for v in values)

    network = "" if config.get("model", "modularnet") == "modularnet" else f"{show('model')} "
    extras = "".join(f", {show(key)}" for key, default in (("activation", "relu"), ("loss", "ce"))
                     if config.get(key, default) != default)
    extras += f", grokfast {show('grokfast')}" if config.get("grokfast", "none") != "none" else ""
    extras += f", loss in {show('logit_dtype')}" if config.get("logit_dtype", "auto") != "auto" else ""
    extras += ", ⊥Grad" if config.get("ortho_grad") else ""
    extras += ", output layer from 0" if config.get("zero_output_init") else ""
    extras += (", Lee et al.'s decoder" if config.get("model") == "transformer"
               and config.get("transformer_style", "nanda") == "grokfast" else "")
    if config.get("model") == "mlp":
        shape = f"{show('layers')} x hidden {show('hidden')}"
    elif config.get("model") == "transformer":
        shape = (f"{show('layers')} layer(s), d_model {show('d_model')}, {show('heads')} heads, d_mlp {show('d_mlp')}"
                 f"{', LayerNorm' if config.get('layernorm') else ''}")
    else:
        shape = f"hidden {show('hidden')}"
    task = (f"parity of {show('parity_k')} of {show('n_bits')} bits, {show('n_samples')} samples"
            if config.get("task") == "parity" else f"m={show('m')} {show('op')}")
    return f"{task}, {network}{shape}{extras}, {show('optimizer')}, batch {show('batch_size')}"


def representative_runs(summary: dict[str, np.ndarray], rows: list[dict], axes: tuple[str, ...]) -> list[int]:
    """One run per group: the one whose grokking epoch is nearest the group's median,
    or the group's first run when none grokked."""
    chosen = []
    for row in rows:
        members = np.flatnonzero(analysis.group_mask(summary, axes, tuple(row[axis] for axis in axes)))
        grok = summary["grok_epoch"][members]
        if row["grokked"]:
            chosen.append(int(members[np.nanargmin(np.abs(grok - row["grok_median"]))]))
        else:
            chosen.append(int(members[0]))
    return chosen


def group_file_suffix(summary: dict[str, np.ndarray], run: int, axes: tuple[str, ...]) -> str:
    """``wd0.0001_lr0.001`` (then ``_hidden64`` ... for the other axes): a group in file names."""
    ordered = ("wd", "lr") + tuple(axis for axis in axes if axis not in ("wd", "lr"))
    return "_".join(f"{axis}{analysis.format_value(summary[axis][run])}" for axis in ordered)


GROK_QUANTITIES = {"grok_epoch": "grokking epoch", "delay": "delay (grokking − memorisation)"}  # an --x figure's panels
CATEGORICAL_AXES = ("op", "model", "activation", "loss", "optimizer", "grokfast")  # no numeric order: not an --x


def check_figure_axes(config: dict, x: str | None, y: str | None) -> None:
    """Refuse an --x that is not a numeric axis of the sweep, or a --y that is not an axis,
    naming the axes it has."""
    axes = varied_axes(config)
    for flag, axis, allowed in (("--x", x, [a for a in axes if a not in CATEGORICAL_AXES]), ("--y", y, axes)):
        if axis is not None and axis not in allowed:
            raise ConfigError(f"{flag} {axis}: not a{' numeric' if flag == '--x' else 'n'} axis of this sweep "
                              f"(it varies {', '.join(allowed)})")
    if y is not None and (x is None or x == y):
        raise ConfigError("--y draws a phase diagram over two axes: give a different --x with it")


class Analysis(NamedTuple):
    """A sweep's analysis: what the tables, stage labels, fits and figures are drawn from."""

    axes: tuple[str, ...]  # the runs' grouping: every varied axis but the seed
    summary: dict[str, np.ndarray]  # per run (summary.csv)
    rows: list[dict]  # per group of seeds (groups.csv)
    fits: list[dict]  # the delay's power law in wd, per combination of the other axes (delay_fit.json)
    labels: dict[str, np.ndarray]  # per rule set, the stage label of every run and epoch (stages.npz)
    events: tuple[analysis.Milestone, ...]  # what the table reports per group: stages, or a transformer's phases
    cfg: AnalysisConfig  # the thresholds and rules it was made with
    at: dict  # the axes the fits and figures hold at one value (--at)

    def table(self) -> str:
        """The table the sweep and the report print."""
        return analysis.format_group_table(self.rows, self.fits, self.axes, self.events, self.cfg, self.at)


def is_transformer(config: dict) -> bool:
    """Whether every program of a sweep is a transformer (a static axis lists its models)."""
    models = config.get("model", "modularnet")
    return set(models if isinstance(models, list) else [models]) == {"transformer"}


def parse_at(text: str | None) -> dict[str, str]:
    """``hidden=128,lr=1e-3`` as {axis: text of its value}; ConfigError for another shape."""
    at = {}
    for item in text.split(",") if text else []:
        axis, _, value = item.partition("=")
        if not axis.strip() or not value.strip():
            raise ConfigError(f"--at {item}: expected AXIS=VALUE[,AXIS=VALUE...]")
        at[axis.strip()] = value.strip()
    return at


def resolve_at(given: dict, config: dict, coordinates: dict[str, np.ndarray], source: str = "--at") -> dict:
    """{axis: value} (numbers, or their text) as the runs' coordinates hold them; ConfigError
    naming the axes and values the sweep has for anything else."""
    axes = [axis for axis in varied_axes(config) if axis != "seed"]
    at = {}
    for axis, value in given.items():
        if axis not in axes:
            raise ConfigError(f"{source} {axis}: not an axis this sweep varies ({', '.join(axes)})")
        values = np.unique(coordinates[axis])
        if values.dtype.kind in "fiu":
            try:
                match = values[np.isclose(values, float(value), rtol=1e-6, atol=0)]
            except (TypeError, ValueError):
                match = values[:0]
        else:
            match = values[values == str(value)]
        if len(match) != 1:
            raise ConfigError(f"{source} {axis}={value}: {axis} takes "
                              f"{', '.join(analysis.format_value(v) for v in values)} in this sweep")
        at[axis] = match[0].item()
    return at


def analyse(config: dict, coordinates: dict[str, np.ndarray], metrics: dict[str, np.ndarray],
            cfg: AnalysisConfig = analysis.DEFAULT, fourier: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
            at: dict | None = None) -> Analysis:
    """The analysis of a sweep's metrics, runs grouped over seeds by every varied axis of
    ``config``; the delay fits at every combination of the other axes (those in ``at`` held
    at its value)."""
    axes = tuple(varied_axes(config))
    summary = analysis.run_summary(coordinates, metrics, cfg, fourier)
    events = analysis.milestones(cfg, transformer=is_transformer(config))
    return Analysis(axes, summary, analysis.group_summary(summary, cfg, axes, events),
                    analysis.delay_power_laws(summary, metrics["test_acc"].shape[1], cfg, axes, at),
                    {rules: analysis.stage_labels(analysis.held_test_metrics(metrics), rules, cfg) for rules in STAGE_RULES},
                    events, cfg, at or {})


def run_title(config: dict, analysed: Analysis, run: int) -> str:
    """The figure title of one run: the shared settings, its group and its seed."""
    group = analysis.group_label({axis: analysed.summary[axis][run] for axis in analysed.axes}, ", ")
    return f"{sweep_title(config)}; {group}, seed {analysed.summary['seed'][run]} (run {run})"


PHASE_STARTS = ("circuit_epoch", "cleanup_epoch", "cleanup_end_epoch")  # a transformer's phases after memorisation


def dashboard_figure(config: dict, metrics: dict[str, np.ndarray], analysed: Analysis, run: int,
                     rules: str | None = None) -> Figure:
    """The study's 3x3 figure of one run, shaded as its table reads the run: by Nanda et al.'s
    phases for a transformer with progress measures, else by the stages of the analysis's
    rules; ``rules`` asks for the stages of those rules instead."""
    summary = analysed.summary
    if rules is None and analysed.events[0].column == PHASE_STARTS[0] and PHASE_STARTS[0] in summary:
        labels = analysis.staircase([summary[name][run : run + 1] for name in PHASE_STARTS], metrics["test_acc"].shape[1])[0]
        bands, shading = plots.PROGRESS_BANDS, "Nanda et al.'s phases, from the progress measures"
    else:
        rules = rules or analysed.cfg.stage_rules
        labels, bands, shading = analysed.labels[rules][run], plots.STAGE_BANDS, f"stages by the '{rules}' rules"
    loss = summary["loss"][run] if "loss" in summary else config.get("loss")  # the run's own when losses vary
    return plots.dashboard(
        {name: values[run] for name, values in metrics.items()}, labels, summary["grok_epoch"][run], summary["mem_epoch"][run],
        run_title(config, analysed, run), shading, LOSS_NAMES.get(loss, "cross-entropy"), bands,
    )


LOSS_NAMES = {"mse": "centred MSE", "ce_log1p": "cross-entropy (log1p form)", "stablemax": "StableMax cross-entropy"}


def fourier_figure(config: dict, metrics: dict[str, np.ndarray], analysed: Analysis,
                   fourier: tuple[np.ndarray, dict[str, np.ndarray]], run: int) -> Figure:
    """One run's Fourier features: heatmaps before, during and after grokking, and the measures
    over the epochs; a transformer's embedding and progress measures."""
    snapshot_epochs, snapshots = fourier
    if "embedding_norm" in snapshots:
        return plots.progress_measures(
            np.arange(1, metrics["test_acc"].shape[1] + 1), snapshot_epochs,
            {name: values[run] for name, values in snapshots.items()},
            {name: metrics[name][run] for name in ("train_loss", "test_loss", "test_acc")},
            [analysed.summary[name][run] for name in PHASE_STARTS],
            run_title(config, analysed, run).replace("; ", ";\n", 1) + ": embedding and progress measures",
        )
    shown = analysis.fourier_moments(snapshot_epochs, metrics["test_acc"][run], analysed.summary["mem_epoch"][run])
    return plots.fourier_features(
        np.arange(1, metrics["test_acc"].shape[1] + 1), snapshot_epochs,
        {name: values[run] for name, values in snapshots.items()}, shown, metrics["test_acc"][run],
        f"{run_title(config, analysed, run)}: Fourier features of the hidden layer",
    )


def write_report(
    folder: Path, config: dict, coordinates: dict[str, np.ndarray], metrics: dict[str, np.ndarray],
    cfg: AnalysisConfig = analysis.DEFAULT, x: str | None = None, y: str | None = None,
    fourier: tuple[np.ndarray, dict[str, np.ndarray]] | None = None, at: dict | None = None,
) -> Analysis:
    """Analyse a sweep's metrics (:func:`analyse`) and write the tables, stage labels, fits
    and figures: a dashboard (and with snapshots a Fourier figure) of each group's
    representative run. When the training fraction varies, Power et al.'s figure (epochs to
    generalise and to memorise against it); with ``x``, grokking epoch and delay against
    that axis, and with ``y`` too, the phase diagram over both. The fits and the figures
    over groups cover every combination of the other axes, or hold those in ``at`` at its
    value. ``fourier`` (see :func:`load_fourier`) is read from the folder when not given."""
    folder = Path(folder)
    fourier = fourier or load_fourier(folder, len(metrics["test_acc"]))
    analysed = analyse(config, coordinates, metrics, cfg, fourier, at)
    axes, summary, rows, at = analysed.axes, analysed.summary, analysed.rows, analysed.at

    write_csv(folder / "summary.csv", summary)
    write_csv(folder / "groups.csv", {key: [row[key] for row in rows] for key in rows[0]})
    if fourier is not None and "excluded_loss" in fourier[1]:
        columns = ("run", *axes, "seed", "grok_epoch", *PHASE_STARTS)
        write_csv(folder / "progress.csv", {name: summary[name] for name in columns} | analysis.final_embedding(fourier[1]))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **analysed.labels)
    write_atomic(folder / "stages.npz", buffer.getvalue())
    record = {"fits": analysed.fits, "at": at, "analysis": dataclasses.asdict(cfg)}
    write_atomic(folder / "delay_fit.json", (json.dumps(record, indent=2) + "\n").encode())

    figures = folder / "figures"
    figures.mkdir(exist_ok=True)
    title = sweep_title(config)
    for run in representative_runs(summary, rows, axes):
        suffix = group_file_suffix(summary, run, axes)
        save_figure(dashboard_figure(config, metrics, analysed, run), figures / f"dashboard_{suffix}.png")
        if fourier is not None:
            save_figure(fourier_figure(config, metrics, analysed, fourier, run), figures / f"fourier_{suffix}.png")
    save_figure(plots.overview(metrics["test_acc"], summary, axes, title, at), figures / "overview.png")
    if (summary["wd"] > 0).any():
        save_figure(plots.delay_vs_wd(summary, rows, analysed.fits, title, axes, at), figures / "delay_vs_wd.png")
    if len(np.unique(summary["wd"])) >= 2 and len(np.unique(summary["lr"])) >= 2:
        save_figure(plots.phase_diagram(rows, axes, "wd", "lr", title, at), figures / "phase_diagram.png")
    if "train_frac" in axes:
        reach = {"generalised_epoch": f"{cfg.grok_threshold:.0%} test accuracy, held {cfg.grok_window} epochs",
                 "mem_epoch": f"{cfg.mem_threshold:.0%} train accuracy"}
        save_figure(plots.epochs_vs_axis(summary, axes, "train_frac", reach, title, at), figures / "train_frac.png")
    if x is not None:
        save_figure(plots.epochs_vs_axis(summary, axes, x, GROK_QUANTITIES, title, at), figures / f"epochs_vs_{x}.png")
    if y is not None:
        save_figure(plots.phase_diagram(rows, axes, x, y, title, at), figures / f"phase_{y}_{x}.png")
    return analysed


def write_results(folder: Path, plan: SweepPlan, command: str, extra: dict, coordinates: dict[str, np.ndarray],
                  metrics: dict[str, np.ndarray], fourier: tuple[np.ndarray, dict[str, np.ndarray]] | None) -> Analysis:
    """Everything a finished sweep leaves in its folder: ``metrics.npz``, ``fourier.npz`` (with
    snapshots), ``config.json`` (with ``extra``: timings), the report; then the checkpoints
    and finished programs' parts are removed."""
    folder = Path(folder)
    write_metrics(folder / "metrics.npz", coordinates, metrics)
    if fourier is not None:
        write_fourier(folder / "fourier.npz", *fourier)
    write_config(folder / "config.json", plan, command, extra)
    analysed = write_report(folder, plan.to_dict(), coordinates, metrics, fourier=fourier)
    remove_partial_files(folder)  # the results are complete; checkpoints and finished programs are not needed
    return analysed


def build_parser() -> argparse.ArgumentParser:
    d = analysis.DEFAULT
    parser = OneLineErrorParser(
        prog="python -m grokjax.report",
        description="Re-analyse a grokjax results folder and redraw its figures, without training.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("folder", help="a results folder written by python -m grokjax.sweep")
    parser.add_argument("--stage-rules", choices=STAGE_RULES, default=d.stage_rules,
                        help="rules of the table's stage columns and the dashboards' shading (a transformer with progress "
                        "measures shows Nanda et al.'s phases instead)")
    parser.add_argument("--stage3-event", choices=STAGE3_EVENTS, default=d.stage3_event,
                        help="what starts Stage III under the events rules")
    parser.add_argument("--grok-threshold", type=float, default=d.grok_threshold, help="test accuracy that counts as generalised")
    parser.add_argument("--grok-min-index", type=int, default=d.grok_min_index, help="earliest 0-based epoch index of a grokking crossing")
    parser.add_argument("--grok-window", type=int, default=d.grok_window, help="epochs test accuracy must hold above the threshold")
    parser.add_argument("--mem-threshold", type=float, default=d.mem_threshold, help="train accuracy that counts as memorised")
    parser.add_argument("--x", help="also draw grokking epoch and delay against this numeric axis of the sweep "
                        "(figures/epochs_vs_X.png)")
    parser.add_argument("--y", help="with --x: also the phase diagram (fraction grokked, median grokking epoch) over "
                        "the two axes (figures/phase_Y_X.png)")
    parser.add_argument("--at", metavar="AXIS=VALUE[,AXIS=VALUE...]",
                        help="hold these axes at one value in the delay fits and the figures over groups (default: "
                        "every combination of the axes other than the one drawn; the tables always cover every group)")
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
        record, coordinates, metrics = load_sweep(Path(args.folder))
        config = record["config"]
        check_figure_axes(config, args.x, args.y)
        at = resolve_at(parse_at(args.at), config, coordinates)
        fourier = load_fourier(Path(args.folder), len(metrics["test_acc"]))  # refused before anything is written
    except (ConfigError, FileNotFoundError, ValueError) as error:  # DamagedFile is a ValueError
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    analysed = write_report(Path(args.folder), config, coordinates, metrics, cfg, args.x, args.y, fourier, at)
    print(analysed.table())
    print(f"\nwrote summary.csv, groups.csv, stages.npz, delay_fit.json and figures/ in {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
