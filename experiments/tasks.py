"""Figures and tables of the tasks beyond modular addition, from their results folders.

    python experiments/tasks.py s5 results/s5 results/s5/high --addition results/train-fraction
    python experiments/tasks.py label-noise results/label-noise
    python experiments/tasks.py parity results/parity/adamw

``s5``: epochs to generalise (test accuracy ≥ 0.95, held 5 epochs) and the last epoch's
test accuracy against the training fraction for each S5 op, over one or more S5 sweeps (their groups together), beside
addition at the same weight decay from a sweep of the same network and budget; ``s5.png``
and ``s5.md`` in the first folder.

``label-noise``: Doshi et al.'s phases over label noise × weight decay (the phase of each
seed), the accuracies of one noise level against the epoch for each weight decay, and the
distribution of the neurons' final IPR by phase; ``label_noise.png`` and
``label_noise.md`` in the folder.

``parity``: per weight decay and seed, the first layer's weight share on the secret bits
against test accuracy and loss, and when each moved: the share reaching 1.5 and 2 times
its even-spread value k / n_bits, test accuracy reaching 0.6 (chance is 0.5) and 0.95
(held 5 epochs); ``parity.png`` and ``parity.md`` in the folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grokjax.analysis import NOISE_PHASES, format_value
from grokjax.cli import OneLineErrorParser
from grokjax.files import DamagedFile
from grokjax.report import load_sweep
from grokjax.results import save_figure, write_atomic


def interval(row) -> str:
    if not row["generalised"]:
        return "-"
    return f"{row['generalised_median']:.0f} [{row['generalised_ci_low']:.0f}–{row['generalised_ci_high']:.0f}]"


def s5(folders: list[Path], addition: Path) -> None:
    folder = folders[0]
    groups = pd.concat([pd.read_csv(f / "groups.csv") for f in folders], ignore_index=True)
    wd = groups["wd"].iloc[0]
    added = pd.read_csv(addition / "groups.csv")
    added_config = load_sweep(addition)[0]["config"]
    added_name = f"{added_config['op']} (m {added_config['m']})"
    added = added[np.isclose(added["wd"], wd)]
    series = [(op, groups[groups["op"] == op]) for op in sorted(groups["op"].unique())] + [(added_name, added)]
    fig = Figure(figsize=(11, 4.2))
    epochs, final = fig.subplots(1, 2)
    for name, rows in series:
        rows = rows.sort_values("train_frac")
        reached = rows[rows["generalised"] > 0]
        low, high = reached["generalised_median"] - reached["generalised_ci_low"], \
            reached["generalised_ci_high"] - reached["generalised_median"]
        epochs.errorbar(reached["train_frac"], reached["generalised_median"], yerr=[low, high], marker="o", capsize=3,
                        label=name, ls="--" if name == added_name else "-")
        final.plot(rows["train_frac"], rows["final_test_acc_mean"], marker="o", label=name,
                   ls="--" if name == added_name else "-")
    epochs.set(xlabel="training fraction", ylabel="epochs to generalise (median, 95% CI)", yscale="log",
               title="epochs to test accuracy ≥ 0.95 (held 5 epochs)")
    final.set(xlabel="training fraction", ylabel="test accuracy (mean over seeds)", ylim=(-0.05, 1.05),
              title="test accuracy at the last epoch")
    epochs.legend(fontsize=8)
    config = load_sweep(folder)[0]["config"]
    fig.suptitle(f"S5 and {added_name}: {config['model']}, hidden {config['hidden']}, {config['optimizer']} lr "
                 f"{format_value(config['lrs'][0])}, wd {format_value(wd)}, batch {config['batch_size'] or 'full'}, "
                 f"{config['epochs']} epochs", fontsize=10)
    fig.tight_layout()
    save_figure(fig, folder / "s5.png")
    fractions = sorted(set(groups["train_frac"]) | set(added["train_frac"]))
    lines = ["| training fraction | " + " | ".join(f"{name}: epoch (seeds); test acc" for name, _ in series) + " |",
             "|---|" + "---|" * len(series)]
    for frac in fractions:
        cells = []
        for _, rows in series:
            row = rows[np.isclose(rows["train_frac"], frac)]
            if row.empty:
                cells.append("not run")
                continue
            row = row.iloc[0]
            cells.append(f"{interval(row)} ({int(row['generalised'])}/{int(row['runs'])}); "
                         f"{row['final_test_acc_mean']:.3f}")
        lines.append(f"| {frac:g} | " + " | ".join(cells) + " |")
    write_atomic(folder / "s5.md", ("\n".join(lines) + "\n").encode())


PHASE_COLOURS = dict(zip(NOISE_PHASES, ("tab:orange", "tab:olive", "tab:green", "tab:blue", "tab:red", "tab:gray")))


def label_noise(folder: Path, shown_noise: float = 0.35) -> None:
    record, coordinates, metrics = load_sweep(folder)
    summary = pd.read_csv(folder / "summary.csv")
    with np.load(folder / "fourier.npz") as snapshots:
        final_ipr = snapshots["neuron_ipr"][:, -1]
    noises, wds = sorted(summary["label_noise"].unique()), sorted(summary["wd"].unique())
    fig = Figure(figsize=(15, 4.6))
    grid, curves, ipr = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.1, 1.3, 1]})
    for i, noise in enumerate(noises):
        for j, wd in enumerate(wds):
            runs = summary[np.isclose(summary["label_noise"], noise) & np.isclose(summary["wd"], wd)]
            for k, phase in enumerate(runs["noise_phase"]):
                offset = (k - (len(runs) - 1) / 2) * 0.22
                grid.scatter(j + offset, i, s=160, color=PHASE_COLOURS[phase], edgecolor="black", linewidth=0.5)
    for phase, colour in PHASE_COLOURS.items():
        grid.scatter([], [], color=colour, label=phase, edgecolor="black", linewidth=0.5)
    grid.set(xticks=range(len(wds)), xticklabels=[format_value(w) for w in wds], yticks=range(len(noises)),
             yticklabels=[format_value(n) for n in noises], xlabel="weight decay", ylabel="label noise ξ",
             title="phase of each seed at the last epoch", xlim=(-0.6, len(wds) - 0.4), ylim=(-0.6, len(noises) - 0.4))
    grid.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.15), ncol=3)
    epochs = np.arange(1, metrics["test_acc"].shape[1] + 1)
    for wd, colour in zip(wds, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")):
        runs = np.isclose(coordinates["label_noise"], shown_noise) & np.isclose(coordinates["wd"], wd)
        if not runs.any():
            continue
        for name, style in (("test_acc", "-"), ("train_acc_corrupted", "--"), ("corrupted_true_acc", ":")):
            curves.plot(epochs, np.median(metrics[name][runs], axis=0), style, color=colour,
                        label=f"wd {format_value(wd)}" if name == "test_acc" else None)
    for name, style in (("test accuracy", "-"), ("corrupted labels fitted", "--"), ("true label given to corrupted", ":")):
        curves.plot([], [], style, color="black", label=name)
    curves.set(xlabel="epoch", ylabel="accuracy (median over seeds)", xscale="log",
               title=f"label noise {format_value(shown_noise)}")
    curves.legend(fontsize=7)
    bins = np.linspace(0, 1, 41)
    for phase in NOISE_PHASES:
        runs = (summary["noise_phase"] == phase).to_numpy() & (summary["label_noise"] > 0).to_numpy()
        if runs.any():
            ipr.hist(final_ipr[runs].ravel(), bins=bins, histtype="step", density=True, color=PHASE_COLOURS[phase],
                     label=f"{phase} ({runs.sum()} runs)")
    ipr.set(xlabel="neuron IPR at the last epoch (Doshi et al.)", ylabel="density over neurons", yscale="log",
            title="IPR of the neurons by phase (ξ > 0)")
    ipr.legend(fontsize=7)
    config = record["config"]
    fig.suptitle(f"corrupted labels: {config['model']} ({config['activation']}, loss {config['loss']}), hidden "
                 f"{config['hidden']}, {config['op']} mod {config['m']}, fraction {format_value(config['train_fracs'][0])}, "
                 f"batch {config['batch_size'] or 'full'}, {config['optimizer']} lr {format_value(config['lrs'][0])}, "
                 f"{metrics['test_acc'].shape[1]} epochs", fontsize=10)
    fig.tight_layout()
    save_figure(fig, folder / "label_noise.png")
    lines = ["| label noise | " + " | ".join(f"wd {format_value(w)}" for w in wds) + " |", "|---|" + "---|" * len(wds)]
    for noise in noises:
        cells = []
        for wd in wds:
            runs = summary[np.isclose(summary["label_noise"], noise) & np.isclose(summary["wd"], wd)]
            counts = runs["noise_phase"].value_counts()
            test = runs["final_test_acc"].median()
            cells.append(", ".join(f"{phase} {count}/{len(runs)}" for phase, count in counts.items()) + f"; test {test:.3f}")
        lines.append(f"| {format_value(noise)} | " + " | ".join(cells) + " |")
    lines += ["", "| phase (ξ > 0) | runs | neurons' final IPR: median [quartiles] |", "|---|---|---|"]
    for phase in NOISE_PHASES:
        runs = (summary["noise_phase"] == phase).to_numpy() & (summary["label_noise"] > 0).to_numpy()
        if runs.any():
            q1, q2, q3 = np.percentile(final_ipr[runs], [25, 50, 75])
            lines.append(f"| {phase} | {runs.sum()} | {q2:.3f} [{q1:.3f}–{q3:.3f}] |")
    write_atomic(folder / "label_noise.md", ("\n".join(lines) + "\n").encode())


def first_epoch(reached: np.ndarray) -> float:
    """1-based epoch at which ``reached`` first holds, NaN if never."""
    return float(np.argmax(reached) + 1) if reached.any() else np.nan


def parity(folder: Path) -> None:
    record, coordinates, metrics = load_sweep(folder)
    summary = pd.read_csv(folder / "summary.csv")
    config = record["config"]
    even = config["parity_k"] / config["n_bits"]
    epochs = np.arange(1, metrics["test_acc"].shape[1] + 1)
    measured = ~np.isnan(metrics["test_acc"][0])
    wds = sorted(np.unique(coordinates["wd"]))
    fig = Figure(figsize=(13, 3.6 * len(wds)))
    axes = np.atleast_2d(fig.subplots(len(wds), 3))
    lines = ["| wd | seed | memorised (train 0.99) | share ≥ 1.5 k/n | share ≥ 2 k/n | test ≥ 0.6 | share there | "
             "generalised (test 0.95) |", "|---|---|---|---|---|---|---|---|"]

    def cell(value):
        return "-" if np.isnan(value) else f"{value:.0f}"

    for (share_ax, acc_ax, loss_ax), wd in zip(axes, wds):
        rows = []
        for colour, run in enumerate(np.flatnonzero(np.isclose(coordinates["wd"], wd))):
            colour = f"C{colour % 10}"
            share = metrics["secret_weight_share"][run]
            share_ax.plot(epochs, share, color=colour, lw=1)
            acc_ax.plot(epochs[measured], metrics["test_acc"][run][measured], color=colour, lw=1)
            loss_ax.plot(epochs[measured], metrics["test_loss"][run][measured], color=colour, lw=1)
            loss_ax.plot(epochs, metrics["train_loss"][run], color=colour, lw=0.6, ls=":")
            rise = first_epoch(np.nan_to_num(metrics["test_acc"][run]) >= 0.6)
            rows.append({"seed": int(coordinates["seed"][run]), "early": first_epoch(share >= 1.5 * even),
                         "progress": first_epoch(share >= 2 * even), "rise": rise,
                         "share_at_rise": np.nan if np.isnan(rise) else share[int(rise) - 1],
                         "generalised": summary["generalised_epoch"][run], "memorised": summary["mem_epoch"][run]})
        share_ax.axhline(even, color="0.5", ls="--", lw=0.8, label=f"k / n_bits = {even:.3f} (even spread)")
        share_ax.set(xlabel="epoch", ylabel="weight share on the secret bits", title=f"wd {format_value(wd)}: first "
                     "layer's weight on the secret bits")
        share_ax.legend(fontsize=8)
        acc_ax.set(xlabel="epoch", ylabel="test accuracy", title=f"wd {format_value(wd)}: test accuracy (chance 0.5)")
        loss_ax.set(xlabel="epoch", ylabel="loss", yscale="log", title="test loss (solid), train loss (dotted)")
        for row in rows:
            lines.append(f"| {format_value(wd)} | {row['seed']} | {cell(row['memorised'])} | {cell(row['early'])} | "
                         f"{cell(row['progress'])} | {cell(row['rise'])} | {row['share_at_rise']:.3f} | "
                         f"{cell(row['generalised'])} |")
        table = pd.DataFrame(rows)
        medians = [cell(table[name].median()) for name in ("memorised", "early", "progress", "rise")]
        lines.append(f"| {format_value(wd)} | median | {' | '.join(medians)} | {table['share_at_rise'].median():.3f} | "
                     f"{cell(table['generalised'].median())} ({table['generalised'].notna().sum()}/{len(table)}) |")
    fig.suptitle(f"sparse parity: {config['parity_k']} secret bits of {config['n_bits']}, {config['n_samples']} samples, "
                 f"fraction {format_value(config['train_fracs'][0])}; mlp {config['layers']} × {config['hidden']}, "
                 f"{config['optimizer']} lr {format_value(config['lrs'][0])}, batch {config['batch_size'] or 'full'}; "
                 "one colour per seed; medians over the seeds that reached each event", fontsize=10)
    fig.tight_layout()
    save_figure(fig, folder / "parity.png")
    write_atomic(folder / "parity.md", ("\n".join(lines) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python experiments/tasks.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=("s5", "label-noise", "parity"))
    parser.add_argument("folders", type=Path, nargs="+", help="the results folder (s5: one or more)")
    parser.add_argument("--addition", type=Path, help="s5: the addition sweep to compare with (its groups.csv)")
    args = parser.parse_args(argv)
    try:
        if args.task == "s5":
            if args.addition is None:
                parser.error("s5 needs --addition")
            s5(args.folders, args.addition)
        elif len(args.folders) > 1:
            parser.error(f"{args.task} takes one folder")
        elif args.task == "parity":
            parity(args.folders[0])
        else:
            label_noise(args.folders[0])
    except (OSError, DamagedFile, KeyError) as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
