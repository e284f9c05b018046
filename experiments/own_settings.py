"""Contested claims measured in their own settings: tables and figures from their sweeps' folders.

    python experiments/own_settings.py grokfast results/grokfast-own-setting/ema results/grokfast-own-setting/ma ...

``grokfast``: Lee et al. report optimizer steps to 95 % validation accuracy, so every run
here is read in steps: (the first epoch whose test accuracy is ≥ 0.95) × steps per epoch,
Lee et al.'s own count (they log accuracy once an epoch and do not ask that it hold). Per
cell (filter, λ, weight decay, learning rate) the runs that got there, the median and its
95 % bootstrap interval; then each filtered cell against the unfiltered references a fair
comparison asks for, paired by seed (the same seed has the same split, initialisation and
batch order in every folder): the unfiltered run at the same weight decay and learning
rate, at the same weight decay with the learning rate × (1 + λ), and Lee et al.'s baseline
(no weight decay). A reference that never got there counts at its budget, so its ratio
is a lower bound ("≥"). Writes ``grokfast_own_setting.md`` and ``.png`` into ``--out``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from interventions import cell, median_interval, write_outputs
from matplotlib import colormaps
from matplotlib.figure import Figure

from grokjax.analysis import first_epoch
from grokjax.cli import OneLineErrorParser
from grokjax.files import DamagedFile
from grokjax.report import load_sweep

THRESHOLD = 0.95  # Lee et al.'s validation accuracy


def steps_per_epoch(config: dict) -> int:
    n_train = int(min(config["train_fracs"]) * (config["m"] * (config["m"] - 1) if config["op"] == "div" else config["m"] ** 2))
    return -(-n_train // (config["batch_size"] or n_train))


def grokfast_runs(folders: list[Path]) -> dict[str, np.ndarray]:
    """Every run of the folders: its cell (filter, λ, wd, lr), seed, steps to 95 % validation
    accuracy (NaN if never), budget in steps, and validation accuracy per step count."""
    runs: dict[str, list] = {key: [] for key in ("filter", "lambda", "wd", "lr", "seed", "steps", "budget", "curve", "every")}
    for folder in folders:
        record, coordinates, metrics = load_sweep(folder)
        config = record["config"]
        per_epoch = steps_per_epoch(config)
        test = np.asarray(metrics["test_acc"], float)
        reached = first_epoch(test >= THRESHOLD)  # 0-based epoch; NaN if never
        n = len(test)
        lambdas = coordinates.get("grokfast_lambda", np.full(n, float(config["grokfast_lambdas"][0])))
        lambdas = np.zeros(n) if config["grokfast"] == "none" else np.asarray(lambdas, float)
        runs["filter"] += list(np.where(lambdas > 0, config["grokfast"], "none"))  # λ 0 passes the gradient unchanged
        runs["lambda"] += list(lambdas)
        runs["wd"] += list(coordinates["wd"])
        runs["lr"] += list(coordinates["lr"])
        runs["seed"] += list(coordinates["seed"])
        runs["steps"] += list(reached * per_epoch)
        runs["budget"] += [test.shape[1] * per_epoch] * n
        runs["curve"] += list(test)
        runs["every"] += [per_epoch] * n
    return {key: np.asarray(values, dtype=object if key in ("filter", "curve") else None) for key, values in runs.items()}


def cells(runs: dict[str, np.ndarray]) -> list[tuple]:
    keys = {(runs["filter"][r], float(runs["lambda"][r]), float(runs["wd"][r]), float(runs["lr"][r])) for r in range(len(runs["seed"]))}
    return sorted(keys, key=lambda k: (k[1] == 0, k[0], k[2], k[3], k[1]))


def in_cell(runs: dict[str, np.ndarray], key: tuple) -> np.ndarray:
    kind, lamb, wd, lr = key
    return np.flatnonzero((runs["filter"] == kind) & (runs["lambda"] == lamb) & np.isclose(runs["wd"].astype(float), wd)
                          & np.isclose(runs["lr"].astype(float), lr))


def label(key: tuple) -> str:
    kind, lamb, wd, lr = key
    head = f"{kind} λ {lamb:g}" if lamb > 0 else "no filter"
    return f"{head}, wd {wd:g}, lr {lr:g}"


def paired_ratio(runs: dict[str, np.ndarray], filtered: np.ndarray, reference: np.ndarray) -> str:
    """Median over seeds of reference steps / filtered steps (a censored reference counts at its budget: "≥")."""
    by_seed = {int(runs["seed"][r]): r for r in reference}
    ratios, censored = [], False
    for r in filtered:
        ref = by_seed.get(int(runs["seed"][r]))
        if ref is None or not np.isfinite(runs["steps"][r]):
            continue
        ref_steps = runs["steps"][ref]
        censored |= not np.isfinite(ref_steps)
        ratios.append((ref_steps if np.isfinite(ref_steps) else runs["budget"][ref]) / runs["steps"][r])
    if not ratios:
        return "–"
    return ("≥ " if censored else "") + cell(*median_interval(np.asarray(ratios)), digits=".1f") + f" ({len(ratios)} seeds)"


def grokfast_table(runs: dict[str, np.ndarray]) -> str:
    lines = ["| cell | reached 95 % | steps to 95 % val. acc., median [95 % CI] | budget (steps) | final val. acc., median |",
             "|---|---:|---:|---:|---:|"]
    for key in cells(runs):
        members = in_cell(runs, key)
        steps = runs["steps"][members].astype(float)
        final = np.median([curve[np.isfinite(curve)][-1] for curve in runs["curve"][members]])
        lines.append(f"| {label(key)} | {np.isfinite(steps).sum()}/{len(members)} | {cell(*median_interval(steps))} | "
                     f"{int(runs['budget'][members].max()):,} | {final:.3f} |")
    lines += ["", "Speed-up of each filter, paired by seed: the reference's steps / the filtered run's steps.", "",
              "| filtered cell | vs no filter, same wd and lr | vs no filter, same wd, lr × (1 + λ) | vs Lee et al.'s baseline "
              "(no filter, wd 0, lr of the cell) |", "|---|---:|---:|---:|"]
    for key in cells(runs):
        kind, lamb, wd, lr = key
        if lamb == 0:
            continue
        filtered = in_cell(runs, key)
        references = [("none", 0.0, wd, lr), ("none", 0.0, wd, lr * (1 + lamb)), ("none", 0.0, 0.0, lr)]
        cells_text = [paired_ratio(runs, filtered, in_cell(runs, ref)) if len(in_cell(runs, ref)) else "not run"
                      for ref in references]
        lines.append(f"| {label(key)} | " + " | ".join(cells_text) + " |")
    return "\n".join(lines) + "\n"


def grokfast_figure(runs: dict[str, np.ndarray], title: str) -> Figure:
    """Validation accuracy against optimizer steps (log scale), the median over seeds of
    each cell with its range."""
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    keys = cells(runs)
    colours = colormaps["tab10"](np.arange(len(keys)) % 10)
    for colour, key in zip(colours, keys):
        members = in_cell(runs, key)
        curves = np.stack(runs["curve"][members]).astype(float)
        steps = (np.arange(curves.shape[1]) + 1) * runs["every"][members[0]]
        measured = np.all(np.isfinite(curves), axis=0)
        median = np.median(curves[:, measured], axis=0)
        ax.fill_between(steps[measured], curves[:, measured].min(0), curves[:, measured].max(0), color=colour, alpha=0.15)
        ax.plot(steps[measured], median, color=colour, lw=1.5, ls="-" if key[1] > 0 else "--",
                label=f"{label(key)} ({len(members)} seeds)")
    ax.axhline(THRESHOLD, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("optimizer steps")
    ax.set_ylabel("validation accuracy (median over seeds, range shaded)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python experiments/own_settings.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("analysis", choices=("grokfast",))
    parser.add_argument("folders", nargs="+", type=Path, help="results folders of the experiment's sweeps")
    parser.add_argument("--out", type=Path, help="where the table and figure go (default: the first folder's parent)")
    args = parser.parse_args(argv)
    out = args.out or args.folders[0].parent
    try:
        runs = grokfast_runs(args.folders)
    except DamagedFile as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    config = load_sweep(args.folders[0])[0]["config"]
    title = (f"Lee et al.'s setting: x·y mod {config['m']} (as {config['op']}), their 2-layer decoder, batch "
             f"{config['batch_size']}, Adam betas {config['beta1']:g}/{config['beta2']:g}: validation accuracy")
    write_outputs(out, "grokfast_own_setting", grokfast_table(runs), grokfast_figure(runs, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
