"""Prieto et al.'s measures side by side: for each results folder given (and each program in
it, e.g. one per --logit-dtype), the median over seeds of test accuracy, the softmax-collapse
and zero-loss fractions and the naive-loss-minimisation alignment against the epoch, and a
Markdown table of when each setting generalised and collapsed.

    python experiments/numerics.py results/numerics/ortho-adamw results/numerics/adamw-300 --out results/numerics
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from grokjax import analysis
from grokjax.cli import OneLineErrorParser
from grokjax.files import DamagedFile
from grokjax.report import load_sweep
from grokjax.results import save_figure, write_atomic

PANELS = (("test_acc", "test accuracy"), ("softmax_collapse", "softmax collapse (share of training examples)"),
          ("zero_loss_fraction", "training examples with loss exactly 0"),
          ("nlm_alignment", "cos(θ, −∇L): naive loss minimisation"))


def settings(folder: Path) -> list[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    """(label, run mask, metrics) per group of seeds of a folder (a loss precision, a weight
    decay): its name and what sets the group apart."""
    record, coordinates, metrics = load_sweep(folder)
    config = record["config"]
    label = f"{folder.name}: loss {config['loss']}, lr {'/'.join(f'{v:g}' for v in config['lrs'])}"
    label += ", ⊥Grad" if config.get("ortho_grad") else ""
    dtype = config.get("logit_dtype", "auto")
    label += "" if dtype == "auto" or isinstance(dtype, list) else f", loss in {dtype}"
    axes = tuple(axis for axis in ("logit_dtype", "wd") if len(np.unique(coordinates.get(axis, [0]))) > 1)
    groups = analysis.group_keys(coordinates, axes) if axes else [()]
    names = {"logit_dtype": "loss in", "wd": "wd"}
    return [(label + "".join(f", {names[axis]} {analysis.format_value(value)}" for axis, value in zip(axes, key)),
             analysis.group_mask(coordinates, axes, key), metrics) for key in groups]


def reached_cell(epochs: np.ndarray) -> str:
    """``412 (3/4)``: the median over the runs that reached an event (NaN: never), and how many did."""
    reached = int(np.isfinite(epochs).sum())
    return "never" if not reached else f"{analysis.median_reached(epochs):.0f} ({reached}/{len(epochs)})"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python experiments/numerics.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="results folders of sweeps")
    parser.add_argument("--out", type=Path, required=True, help="where numerics.png and numerics.md go")
    args = parser.parse_args(argv)
    try:
        rows = [row for folder in args.folders for row in settings(folder)]
    except (FileNotFoundError, DamagedFile) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    fig = Figure(figsize=(13, 9), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    lines = ["| setting | runs | epochs | generalised (test ≥ 0.95, held 5 epochs) | collapse ≥ 50 % from | "
             "loss exactly 0 for ≥ 50 % from | final test acc (median) |", "|---|---|---|---|---|---|---|"]
    for label, runs, metrics in rows:
        held = analysis.held_test_metrics({name: values[runs] for name, values in metrics.items()})
        epochs = np.arange(1, held["test_acc"].shape[1] + 1)
        for ax, (name, _) in zip(axes, PANELS):
            values = analysis.latest_measured(held[name]) if name == "test_acc" else held[name]
            measured = np.isfinite(values).any(axis=0)  # test accuracy before its first measurement: none
            ax.plot(epochs[measured], np.nanmedian(values[:, measured], axis=0), lw=1.4, label=label)
        cells = [reached_cell(analysis.generalised_epoch(held["test_acc"])),
                 reached_cell(analysis.first_epoch(held["softmax_collapse"] >= 0.5)),
                 reached_cell(analysis.first_epoch(held["zero_loss_fraction"] >= 0.5))]
        lines.append(f"| {label} | {int(runs.sum())} | {len(epochs)} | {' | '.join(cells)} | "
                     f"{np.nanmedian(held['test_acc'][:, -1]):.3f} |")
    for ax, (_, title) in zip(axes, PANELS):
        ax.set(title=title, xlabel="epoch", xscale="log", ylim=(-0.02, 1.02))  # shares and a cosine
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Prieto et al.'s measures, median over each setting's seeds (the folders' READMEs give their tasks)")
    args.out.mkdir(parents=True, exist_ok=True)
    save_figure(fig, args.out / "numerics.png")
    write_atomic(args.out / "numerics.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
