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
is a lower bound ("≥"). A seed of one cell in several folders (a λ-0 run continued as a
longer baseline) counts once, with its longest budget. Writes ``grokfast_own_setting.md``
and ``.png`` into ``--out``.

``delay-law``: Lyu et al.'s prediction that, from an initialisation scaled by α with small
weight decay λ, the transition comes at gradient-flow time t ≈ (1/λ) log α, where t is
steps × learning rate. Per run the time at which test accuracy first reaches 0.5 and 0.95
(and train accuracy 0.99); per weight decay a line t = a + b log α over the initialisation
scales (the law: b = 1/λ, so λ·b = 1) and the same slope between each pair of neighbouring
scales (the law is for large α: the local slope shows from which α on it holds), per
initialisation scale a power law t ∝ λ^-k over the weight decays (the law: k = 1), also
between neighbouring weight decays (the law is for small λ), each with a 95 % bootstrap
interval; runs that never got there are left out of the fits and counted.
Writes ``delay_law.md`` and ``.png``.

``optimizers``: one folder with an optimizer axis (Muon against AdamW, Tveit et al.), read
like ``grokfast`` (the first epoch at ≥ 95 % test accuracy, also in steps): per cell
(optimizer, wd, lr) the runs that got there and the median with its interval; each
optimizer's best cell (most runs there, then the earliest median) against the other's, and
every cell against the other optimizer's same cell, paired by seed (the same seed has the
same split and initialisation in every program). Writes ``optimizers_own_setting.md`` and
``.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from interventions import BOOTSTRAP, cell, median_interval, write_outputs
from matplotlib import colormaps
from matplotlib.figure import Figure

from grokjax.analysis import first_epoch, fit_line, fit_power_law
from grokjax.cli import OneLineErrorParser
from grokjax.files import DamagedFile
from grokjax.report import load_sweep, sweep_title

THRESHOLD = 0.95  # Lee et al.'s validation accuracy


def one_per_run(values: list) -> np.ndarray:
    """A 1-D object array of per-run items (curves of any length; strings), never a 2-D one."""
    array = np.empty(len(values), object)
    array[:] = values
    return array


def grokfast_runs(folders: list[Path]) -> dict[str, np.ndarray]:
    """Every run of the folders: its cell (filter, λ, wd, lr), seed, steps to 95 % validation
    accuracy (NaN if never), budget in steps, and validation accuracy per step count."""
    runs: dict[str, list] = {key: [] for key in ("filter", "lambda", "wd", "lr", "seed", "steps", "budget", "curve", "train",
                                                 "every")}
    shared = None
    for folder in folders:
        record, coordinates, metrics = load_sweep(folder)
        config = record["config"]
        check_comparable(folder, record)
        setting = {name: config[name] for name in ("m", "op", "model", "transformer_style", "batch_size", "optimizer")}
        if shared not in (None, setting):
            raise ValueError(f"{folder}: its setting {setting} differs from the first folder's {shared}")
        shared = setting
        per_epoch = record["derived"]["steps_per_epoch"]
        test = np.asarray(metrics["test_acc"], float)
        reached = first_epoch(test >= THRESHOLD)  # 1-based epoch; NaN if never
        n = len(test)
        lambdas = coordinates.get("grokfast_lambda", np.full(n, float(config["grokfast_lambdas"][0])))
        lambdas = np.zeros(n) if config["grokfast"] == "none" else np.asarray(lambdas, float)
        alphas = coordinates.get("grokfast_alpha", np.full(n, float(config["grokfast_alphas"][0])))
        # λ 0 passes the gradient unchanged: those runs are unfiltered
        runs["filter"] += [("none" if lamb == 0 else f"ema α {alpha:g}" if config["grokfast"] == "ema" else
                            f"ma window {config['grokfast_window']}") for lamb, alpha in zip(lambdas, alphas)]
        runs["lambda"] += list(lambdas)
        runs["wd"] += list(coordinates["wd"])
        runs["lr"] += list(coordinates["lr"])
        runs["seed"] += list(coordinates["seed"])
        runs["steps"] += list(reached * per_epoch)
        runs["budget"] += [test.shape[1] * per_epoch] * n
        runs["curve"] += list(test)
        runs["train"] += list(np.asarray(metrics["train_acc"], float))
        runs["every"] += [per_epoch] * n
    runs = {key: one_per_run(values) if key in ("filter", "curve", "train") else np.asarray(values) for key, values in runs.items()}
    # a cell's seed run in two folders (an unfiltered λ 0 run continued as a longer baseline) counts once, the longest
    longest = {}
    for r in np.argsort(runs["budget"], kind="stable"):
        longest[(runs["filter"][r], runs["lambda"][r], runs["wd"][r], runs["lr"][r], runs["seed"][r])] = r
    keep = np.sort(list(longest.values()))
    return {key: values[keep] for key, values in runs.items()}


def check_comparable(folder: Path, record: dict) -> None:
    """One compiled program per folder, and no grid axis the cells do not name."""
    if "steps_per_epoch" not in record["derived"]:
        raise ValueError(f"{folder} holds several programs (a static axis with several values): give one per folder")
    config = record["config"]
    other = [name for name in ("data_seeds", "train_fracs", "label_noises", "init_scales") if len(config.get(name) or ()) > 1]
    if other:
        raise ValueError(f"{folder} varies {', '.join(other)}: the grokfast cells are filter, λ, wd and lr alone")


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


def paired_ratio(runs: dict[str, np.ndarray], filtered: np.ndarray, reference: np.ndarray, name: str = "filtered") -> str:
    """Median over seeds of reference steps / filtered steps (a censored reference counts at its budget: "≥"), over
    the seeds whose filtered run got there; those that did not are counted beside it (``name`` says which runs)."""
    by_seed = {int(runs["seed"][r]): r for r in reference}
    ratios, censored, missed = [], False, 0
    for r in filtered:
        ref = by_seed.get(int(runs["seed"][r]))
        if ref is None:
            continue
        if not np.isfinite(runs["steps"][r]):
            missed += 1
            continue
        ref_steps = runs["steps"][ref]
        censored |= not np.isfinite(ref_steps)
        ratios.append((ref_steps if np.isfinite(ref_steps) else runs["budget"][ref]) / runs["steps"][r])
    if not ratios:
        return "–"
    seeds = f"{len(ratios)} seeds" + (f"; {missed} {name} run{'s' * (missed > 1)} never got there" if missed else "")
    return ("≥ " if censored else "") + cell(*median_interval(np.asarray(ratios)), digits=".1f") + f" ({seeds})"


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


def padded(curves: np.ndarray) -> np.ndarray:
    """Per-run curves as one [runs, longest] array, NaN past a shorter run's end."""
    out = np.full((len(curves), max(len(c) for c in curves)), np.nan)
    for row, curve in zip(out, curves):
        row[: len(curve)] = curve
    return out


def grokfast_figure(runs: dict[str, np.ndarray], title: str) -> Figure:
    """Training and validation accuracy against optimizer steps (log scale), the median over
    seeds of each cell with its range."""
    fig = Figure(figsize=(14, 5.5), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    keys = cells(runs)
    colours = colormaps["tab10"](np.arange(len(keys)) % 10)
    for ax, name, what in zip(axes, ("train", "curve"), ("training accuracy", "validation accuracy")):
        for colour, key in zip(colours, keys):
            members = in_cell(runs, key)
            curves = padded(runs[name][members])
            steps = (np.arange(curves.shape[1]) + 1) * runs["every"][members[0]]
            measured = np.any(np.isfinite(curves), axis=0)  # past a shorter run's end: the runs that went on
            shown = curves[:, measured]
            ax.fill_between(steps[measured], np.nanmin(shown, 0), np.nanmax(shown, 0), color=colour, alpha=0.15)
            ax.plot(steps[measured], np.nanmedian(shown, axis=0), color=colour, lw=1.5, ls="-" if key[1] > 0 else "--",
                    label=f"{label(key)} ({len(members)} seeds)")
        ax.axhline(THRESHOLD, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("optimizer steps")
        ax.set_ylabel(f"{what} (median over seeds, range shaded)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=10)
    return fig


# --- Lyu et al.'s delay law -------------------------------------------------------------------

DELAY_THRESHOLDS = (0.5, 0.95)  # test accuracy: the middle of the transition and its end


def delay_runs(folders: list[Path]) -> dict[str, np.ndarray]:
    """Every run of the folders: α, λ, lr, seed, the gradient-flow times (steps × lr) of
    memorisation and of each test-accuracy threshold (NaN if never), and the curves."""
    runs: dict[str, list] = {key: [] for key in ("alpha", "wd", "lr", "seed", "t_mem", *(f"t_{q:g}" for q in DELAY_THRESHOLDS),
                                                 "t_floor", "budget", "test", "w1_norm")}
    for folder in folders:
        record, coordinates, metrics = load_sweep(folder)
        config = record["config"]
        if config["batch_size"] != 0 or config["optimizer"] != "sgd":
            raise ValueError(f"{folder}: the delay law is read in gradient-flow time (steps × lr): it needs gradient "
                             "descent, optimizer sgd with full batch (batch_size 0)")
        n = len(metrics["test_acc"])
        lr = np.asarray(coordinates["lr"], float)
        runs["alpha"] += list(coordinates.get("init_scale", np.full(n, float(config["init_scales"][0]))))
        runs["wd"] += list(coordinates["wd"])
        runs["lr"] += list(lr)
        runs["seed"] += list(coordinates["seed"])
        runs["t_mem"] += list(first_epoch(np.asarray(metrics["train_acc"]) >= 0.99) * lr)
        test = np.asarray(metrics["test_acc"], float)
        for q in DELAY_THRESHOLDS:
            runs[f"t_{q:g}"] += list(first_epoch(test >= q) * lr)  # an unmeasured epoch is NaN: never >= q
        # the early phase's end: the W1 norm within 10 % of where it ends (the law puts it at λ·t ≈ log α)
        norm = np.asarray(metrics["w1_norm"], float)
        runs["t_floor"] += list(first_epoch(norm <= 1.1 * norm[:, -1:]) * lr)
        runs["budget"] += list(test.shape[1] * lr)
        runs["test"] += list(test)
        runs["w1_norm"] += list(np.asarray(metrics["w1_norm"], float))
    return {key: one_per_run(values) if key in ("test", "w1_norm") else np.asarray(values, float) for key, values in runs.items()}


def neighbour_fits(runs: dict[str, np.ndarray], t: np.ndarray, x: str, group: str, fit) -> dict[float, list[tuple]]:
    """Per value of ``group``, ``fit(x values, t)`` over each pair of neighbouring values of ``x``:
    the local slope or exponent, which shows where a law that holds at one end starts to."""
    out = {}
    for value in np.unique(runs[group]):
        levels = np.unique(runs[x][runs[group] == value])
        out[float(value)] = [(float(low), float(high), fit(runs[x][members], t[members]))
                             for low, high in zip(levels, levels[1:])
                             for members in [(runs[group] == value) & np.isin(runs[x], (low, high))]]
    return out


def delay_fits(runs: dict[str, np.ndarray]) -> dict:
    """Per threshold: per λ the line t = a + b log α (λ·b is 1 under the law), per α the power
    law t ∝ λ^-k (k is 1 under the law), each over every value and between neighbouring ones."""
    def over_log_alpha(alpha, t):
        return fit_line(np.log(alpha), t, **BOOTSTRAP)

    def over_wd(wd, t):
        return fit_power_law(wd, t, **BOOTSTRAP)

    fits = {}
    for q in DELAY_THRESHOLDS:
        t = runs[f"t_{q:g}"]
        fits[q] = {
            "alpha": {float(wd): over_log_alpha(runs["alpha"][runs["wd"] == wd], t[runs["wd"] == wd])
                      for wd in np.unique(runs["wd"])},
            "alpha_pairs": neighbour_fits(runs, t, "alpha", "wd", over_log_alpha),
            "wd": {float(a): over_wd(runs["wd"][runs["alpha"] == a], t[runs["alpha"] == a]) for a in np.unique(runs["alpha"])},
            "wd_pairs": neighbour_fits(runs, t, "wd", "alpha", over_wd),
        }
    return fits


def finite_median(values: np.ndarray, digits: str) -> str:
    finite = values[np.isfinite(values)]
    return f"{np.median(finite):{digits}}" if len(finite) else "–"


def delay_table(runs: dict[str, np.ndarray], fits: dict) -> str:
    lines = ["| α | λ | lr | runs | memorised (t), median | λ·t at the W1 norm's floor, median | t at test 0.5, median [95 % CI] "
             "| t at test 0.95, median [95 % CI] | λ·t at test 0.5 | λ·t at test 0.95 | log α |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for alpha, wd, lr in sorted({(a, w, r) for a, w, r in zip(runs["alpha"], runs["wd"], runs["lr"])}):
        members = (runs["alpha"] == alpha) & (runs["wd"] == wd) & (runs["lr"] == lr)
        reached = [f"{np.isfinite(runs[f't_{q:g}'][members]).sum()}/{members.sum()}: "
                   f"{cell(*median_interval(runs[f't_{q:g}'][members]))}" for q in DELAY_THRESHOLDS]
        lines.append(f"| {alpha:g} | {wd:g} | {lr:g} | {members.sum()} | {finite_median(runs['t_mem'][members], '.0f')} | "
                     f"{finite_median(wd * runs['t_floor'][members], '.2f')} | {reached[0]} | {reached[1]} | "
                     f"{finite_median(wd * runs['t_0.5'][members], '.2f')} | {finite_median(wd * runs['t_0.95'][members], '.2f')} | "
                     f"{np.log(alpha):.2f} |")
    lines += ["", "Fits (95 % bootstrap intervals, resampling runs within each x value; runs that never reached the "
              "threshold left out):", "",
              "| threshold | over log α at λ | slope b [95 % CI] | λ·b (law: 1) | over λ at α | exponent k in t ∝ λ^-k (law: 1) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for q, fit in fits.items():
        by_wd = [(wd, line) for wd, line in fit["alpha"].items() if line is not None]
        by_alpha = [(a, law) for a, law in fit["wd"].items() if law is not None]
        for i in range(max(len(by_wd), len(by_alpha))):
            left = ["", "", ""]
            if i < len(by_wd):
                wd, line = by_wd[i]
                left = [f"{wd:g}", cell(line["slope"], line["slope_low"], line["slope_high"]),
                        cell(wd * line["slope"], wd * line["slope_low"], wd * line["slope_high"], digits=".2f")]
            right = ["", ""]
            if i < len(by_alpha):
                a, law = by_alpha[i]
                right = [f"{a:g}", cell(law["alpha"], law["alpha_low"], law["alpha_high"], digits=".2f")]
            lines.append(f"| {q:g} | " + " | ".join(left + right) + " |")
    lines += ["", "Local slopes, between neighbouring α (the law holds for large α):", "",
              "| threshold | λ | from α | to α | λ·b (law: 1) [95 % CI] |", "|---:|---:|---:|---:|---:|"]
    for q, fit in ((q, fit) for q, fit in fits.items() if np.isfinite(runs[f"t_{q:g}"]).any()):
        for wd, pairs in fit["alpha_pairs"].items():
            for low, high, line in pairs:
                text = ("–" if line is None else
                        cell(wd * line["slope"], wd * line["slope_low"], wd * line["slope_high"], digits=".2f"))
                lines.append(f"| {q:g} | {wd:g} | {low:g} | {high:g} | {text} |")
    lines += ["", "Local exponents, between neighbouring λ (the law is for small λ):", "",
              "| threshold | α | from λ | to λ | k (law: 1) [95 % CI] |", "|---:|---:|---:|---:|---:|"]
    for q, fit in ((q, fit) for q, fit in fits.items() if np.isfinite(runs[f"t_{q:g}"]).any()):
        for alpha, pairs in fit["wd_pairs"].items():
            for low, high, law in pairs:
                text = "–" if law is None else cell(law["alpha"], law["alpha_low"], law["alpha_high"], digits=".2f")
                lines.append(f"| {q:g} | {alpha:g} | {low:g} | {high:g} | {text} |")
    return "\n".join(lines) + "\n"


def delay_figure(runs: dict[str, np.ndarray], fits: dict, title: str) -> Figure:
    """Test accuracy against t per α (at the λ with most α), the transition time against log α
    and against 1/λ with the fits, and the W1 norm divided by its start against λ·t beside
    e^-λt. The transition is the highest threshold that at least half the runs reached."""
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    (curves, versus_alpha, versus_wd), (norms, mem, _) = fig.subplots(2, 3)
    fig.delaxes(_)
    wd_alpha = max(np.unique(runs["wd"]), key=lambda wd: len(np.unique(runs["alpha"][runs["wd"] == wd])))
    alphas = np.unique(runs["alpha"])
    colours = dict(zip(alphas, colormaps["viridis"](np.linspace(0, 0.9, len(alphas)))))
    lowest = 1.0
    for alpha in alphas:
        members = np.flatnonzero((runs["alpha"] == alpha) & (runs["wd"] == wd_alpha))
        if not len(members):
            continue
        test = np.stack(runs["test"][members])
        measured = np.all(np.isfinite(test), axis=0)
        t = (np.arange(test.shape[1]) + 1) * runs["lr"][members[0]]
        curves.plot(t[measured], np.median(test[:, measured], axis=0), color=colours[alpha], label=f"α {alpha:g}")
        norm = np.stack(runs["w1_norm"][members])
        relative = np.median(norm / norm[:, :1], axis=0)
        lowest = min(lowest, np.nanmin(relative))
        norms.plot(wd_alpha * t, relative, color=colours[alpha], label=f"α {alpha:g}")
    shown = np.exp(-wd_alpha * t) >= lowest / 3  # the reference line only as far as the curves reach
    norms.plot(wd_alpha * t[shown], np.exp(-wd_alpha * t[shown]), "k--", lw=1, label="e^-λt")
    norms.set_yscale("log")
    norms.set(xlabel="λ·t", ylabel="W1 norm / its value after the first step (median)",
              title=f"the early phase shrinks the weights as e^-λt (λ {wd_alpha:g})")
    curves.axhline(0.95, color="grey", lw=0.8, ls=":")
    curves.set(xlabel="t = steps × lr", ylabel="test accuracy (median over seeds)", title=f"λ {wd_alpha:g}")
    for ax in (curves, norms):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    q = max((q for q in DELAY_THRESHOLDS if np.isfinite(runs[f"t_{q:g}"]).mean() >= 0.5), default=DELAY_THRESHOLDS[0])
    t95 = runs[f"t_{q:g}"]
    for wd, colour in zip(np.unique(runs["wd"]), colormaps["tab10"](np.arange(len(np.unique(runs["wd"]))) % 10)):
        members = runs["wd"] == wd
        reached = np.isfinite(t95[members])
        versus_alpha.scatter(np.log(runs["alpha"][members]), t95[members], s=14, alpha=0.6, color=colour,
                             label=f"λ {wd:g} ({reached.sum()}/{members.sum()} reached)")
        line = fits[q]["alpha"][float(wd)]
        if line is None:
            continue
        levels = np.unique(runs["alpha"][members][reached])
        x = np.log(levels)
        versus_alpha.plot(x, line["intercept"] + line["slope"] * x, ":", lw=1, color=colour,
                          label=f"fit over every α: slope {line['slope']:.0f}")
        medians = [np.median(t95[members & (runs["alpha"] == level) & np.isfinite(t95)]) for level in levels]
        versus_alpha.plot(x, medians, "-", lw=1, color=colour)
        versus_alpha.plot(x, medians[-1] + (x - x[-1]) / wd, "--", lw=1, color="grey",
                          label=f"the law's slope 1/λ = {1 / wd:.0f}, through the largest α")
    versus_alpha.set(xlabel="log α", ylabel=f"t at test accuracy {q:g}", title="transition time against log α")
    for alpha in alphas:
        members = runs["alpha"] == alpha
        if len(np.unique(runs["wd"][members])) < 2:
            continue
        versus_wd.scatter(1 / runs["wd"][members], t95[members], s=14, alpha=0.6, color=colours[alpha], label=f"α {alpha:g}")
        law = fits[q]["wd"][float(alpha)]
        if law is not None:
            fitted = runs["wd"][members][np.isfinite(t95[members])]
            x = np.geomspace(fitted.min(), fitted.max(), 20)
            versus_wd.plot(1 / x, law["prefactor"] * x ** -law["alpha"], "--", color=colours[alpha], lw=1,
                           label=f"fit: t ∝ λ^-{law['alpha']:.2f} (law: λ^-1)")
    versus_wd.set(xlabel="1/λ", ylabel=f"t at test accuracy {q:g}", title="transition time against 1/λ")
    for alpha in alphas:
        members = runs["alpha"] == alpha
        mem.scatter(runs["wd"][members] * runs["t_mem"][members], runs["wd"][members] * t95[members], s=14,
                    color=colours[alpha], label=f"α {alpha:g}")
    mem.set(xlabel="λ·t at memorisation (train 0.99)", ylabel=f"λ·t at test {q:g}", title="memorisation early, transition late")
    for ax in (versus_alpha, versus_wd, mem):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


# --- Muon against AdamW (Tveit et al.) ---------------------------------------------------------

def optimizer_runs(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Every run of a folder with an optimizer axis: its optimizer, wd, lr, seed, steps to 95 % test accuracy (NaN if
    never), budget in steps and test accuracy per epoch."""
    record, coordinates, metrics = load_sweep(folder)
    config = record["config"]
    per_epoch = {program["optimizer"]: program["steps_per_epoch"] for program in record["derived"].get("programs", ())}
    if "optimizer" not in coordinates or len(per_epoch) < 2:
        raise ValueError(f"{folder} has no optimizer axis: give the folder of a sweep over --optimizer A,B")
    other = [name for name in ("data_seeds", "train_fracs", "label_noises", "init_scales") if len(config.get(name) or ()) > 1]
    if other or len(record["derived"]["programs"]) != len(per_epoch):
        raise ValueError(f"{folder} varies {', '.join(other) or 'a static axis besides the optimizer'}: the cells are "
                         "optimizer, wd and lr alone")
    test = np.asarray(metrics["test_acc"], float)
    steps = np.array([per_epoch[name] for name in coordinates["optimizer"]])
    runs = {"optimizer": np.asarray(coordinates["optimizer"]), "wd": np.asarray(coordinates["wd"], float),
            "lr": np.asarray(coordinates["lr"], float), "seed": np.asarray(coordinates["seed"]),
            "epoch": first_epoch(test >= THRESHOLD), "budget": test.shape[1] * steps, "every": steps,
            "curve": one_per_run(list(test))}
    runs["steps"] = runs["epoch"] * steps
    return runs, config


def optimizer_cells(runs: dict[str, np.ndarray]) -> list[tuple]:
    return sorted({(o, float(w), float(r)) for o, w, r in zip(runs["optimizer"], runs["wd"], runs["lr"])})


def in_optimizer_cell(runs: dict[str, np.ndarray], key: tuple) -> np.ndarray:
    name, wd, lr = key
    return np.flatnonzero((runs["optimizer"] == name) & np.isclose(runs["wd"], wd) & np.isclose(runs["lr"], lr))


def best_cell(runs: dict[str, np.ndarray], name: str) -> tuple:
    """The optimizer's cell with the most runs at 95 %, then the earliest median epoch."""
    def rank(key):
        epochs = runs["epoch"][in_optimizer_cell(runs, key)]
        return -np.isfinite(epochs).sum(), np.median(epochs[np.isfinite(epochs)]) if np.isfinite(epochs).any() else np.inf

    return min((key for key in optimizer_cells(runs) if key[0] == name), key=rank)


def optimizers_table(runs: dict[str, np.ndarray]) -> str:
    names = sorted(set(runs["optimizer"]))
    lines = ["| optimizer | wd | lr | reached 95 % | epoch at 95 % test acc., median [95 % CI] | steps, median | "
             "final test acc., median |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key in optimizer_cells(runs):
        members = in_optimizer_cell(runs, key)
        epochs = runs["epoch"][members]
        final = np.median([curve[np.isfinite(curve)][-1] for curve in runs["curve"][members]])
        lines.append(f"| {key[0]} | {key[1]:g} | {key[2]:g} | {np.isfinite(epochs).sum()}/{len(members)} | "
                     f"{cell(*median_interval(epochs))} | {finite_median(runs['steps'][members], '.0f')} | {final:.3f} |")
    first, second = names[0], names[-1]
    best = {name: best_cell(runs, name) for name in names}
    lines += ["", f"Each optimizer at its own best cell (most runs at 95 %, then the earliest median); speed-up = "
              f"{first}'s epoch / {second}'s, paired by seed; a {first} run that never got there counts at its budget "
              "(\"≥\").", "", "| optimizer | best cell | epoch at 95 %, median [95 % CI] |", "|---|---|---:|"]
    for name in names:
        epochs = runs["epoch"][in_optimizer_cell(runs, best[name])]
        lines.append(f"| {name} | wd {best[name][1]:g}, lr {best[name][2]:g} | {np.isfinite(epochs).sum()}/{len(epochs)}: "
                     f"{cell(*median_interval(epochs))} |")
    speedup = paired_ratio(runs, in_optimizer_cell(runs, best[second]), in_optimizer_cell(runs, best[first]), second)
    lines += ["", f"Speed-up, best cell against best cell: {speedup}", "",
              f"Cell by cell, {first}'s epoch / {second}'s in the same cell, paired by seed:", "",
              "| wd | lr | speed-up, median [95 % CI] |", "|---:|---:|---:|"]
    for _, wd, lr in (key for key in optimizer_cells(runs) if key[0] == second):
        ratio = paired_ratio(runs, in_optimizer_cell(runs, (second, wd, lr)), in_optimizer_cell(runs, (first, wd, lr)), second)
        lines.append(f"| {wd:g} | {lr:g} | {ratio} |")
    return "\n".join(lines) + "\n"


def optimizers_figure(runs: dict[str, np.ndarray], title: str) -> Figure:
    """The median epoch at 95 % against the learning rate per optimizer and weight decay (interval as bars; a cell
    where fewer than half the runs got there is drawn hollow at its median of those that did), and the test accuracy
    of each optimizer's best cell."""
    fig = Figure(figsize=(14, 5.5), layout="constrained")
    versus_lr, curves = fig.subplots(1, 2)
    names = sorted(set(runs["optimizer"]))
    colours = dict(zip(names, colormaps["tab10"](np.arange(len(names)))))
    for name in names:
        for wd, marker in zip(np.unique(runs["wd"]), "osD^v"):
            keys = [key for key in optimizer_cells(runs) if key[0] == name and np.isclose(key[1], wd)]
            stats = np.array([median_interval(runs["epoch"][in_optimizer_cell(runs, key)]) for key in keys])
            reached = np.array([np.isfinite(runs["epoch"][in_optimizer_cell(runs, key)]).mean() for key in keys])
            lrs = np.array([key[2] for key in keys])
            versus_lr.errorbar(lrs, stats[:, 0], yerr=[stats[:, 0] - stats[:, 1], stats[:, 2] - stats[:, 0]], marker=marker,
                               color=colours[name], ls="-" if wd == runs["wd"].max() else "--", lw=1, capsize=2,
                               label=f"{name}, wd {wd:g}")
            hollow = reached < 0.5
            versus_lr.scatter(lrs[hollow], stats[hollow, 0], marker=marker, s=40, color="white", edgecolors=colours[name],
                              zorder=3)
        best = best_cell(runs, name)
        members = in_optimizer_cell(runs, best)
        test = np.stack(runs["curve"][members])
        measured = np.all(np.isfinite(test), axis=0)
        epochs = np.arange(1, test.shape[1] + 1)[measured]
        curves.fill_between(epochs, test[:, measured].min(0), test[:, measured].max(0), color=colours[name], alpha=0.15)
        curves.plot(epochs, np.median(test[:, measured], 0), color=colours[name],
                    label=f"{name}, wd {best[1]:g}, lr {best[2]:g} ({len(members)} seeds)")
    versus_lr.set(xscale="log", xlabel="learning rate (Muon: its matrices'; its AdamW part at --muon-adam-lr)",
                  ylabel="epoch at 95 % test accuracy (median, 95 % CI)",
                  title="every cell (hollow: fewer than half the runs got there)")
    curves.axhline(THRESHOLD, color="grey", lw=0.8, ls=":")
    curves.set(xlabel="epoch", ylabel="test accuracy (median over seeds, range shaded)", title="each optimizer's best cell")
    for ax in (versus_lr, curves):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python experiments/own_settings.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("analysis", choices=("grokfast", "delay-law", "optimizers"))
    parser.add_argument("folders", nargs="+", type=Path, help="results folders of the experiment's sweeps")
    parser.add_argument("--out", type=Path, help="where the table and figure go (default: the first folder's parent)")
    args = parser.parse_args(argv)
    out = args.out or args.folders[0].parent
    try:
        config = load_sweep(args.folders[0])[0]["config"]
        if args.analysis == "optimizers":
            if len(args.folders) > 1:
                raise ValueError("optimizers reads one folder (one task) at a time")
            runs, _ = optimizer_runs(args.folders[0])
        else:
            runs = grokfast_runs(args.folders) if args.analysis == "grokfast" else delay_runs(args.folders)
    except (DamagedFile, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if args.analysis == "grokfast":
        task = {"mul_nz": "x·y (y ≠ 0)", "div": "x / y (y ≠ 0)"}.get(config["op"], config["op"])
        title = (f"Lee et al.'s setting: {task} mod {config['m']}, their 2-layer decoder, batch "
                 f"{config['batch_size']}, Adam betas {config['beta1']:g}/{config['beta2']:g}")
        write_outputs(out, "grokfast_own_setting", grokfast_table(runs), grokfast_figure(runs, title))
    elif args.analysis == "optimizers":
        title = f"{sweep_title(config)}, {config['train_fracs'][0]:g} of the pairs, {len(config['seeds'])} seeds per cell"
        write_outputs(args.out or args.folders[0], "optimizers_own_setting", optimizers_table(runs),
                      optimizers_figure(runs, title))
    else:
        fits = delay_fits(runs)
        title = (f"Lyu et al.'s setting as far as grokjax goes: {sweep_title(config)}, gradient descent, "
                 f"lr {'/'.join(f'{v:g}' for v in np.unique(runs['lr']))}, {len(config['seeds'])} seeds per cell")
        write_outputs(out, "delay_law", delay_table(runs, fits), delay_figure(runs, fits, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
