"""The Li2 scaling law: how many training pairs does the Li2 network need to generalise?

Tian's Li2 paper (arXiv 2509.21519) predicts that modular addition generalises once the
number of training pairs n exceeds about c * M * ln M (the authors' code uses
c = 2.7482), far below the M^2 pairs of the whole table. This script trains the Li2
preset (one-hot inputs, x^2, centred MSE, full-batch Adam) for every modulus M, every
training-set size n on a grid of multiples of c * M * ln M, and several seeds. Each M is
one compiled program: the sizes and seeds are vmapped, the training-set size being a
per-run mask over the largest set (``SweepConfig.min_train_frac``).

A run *generalises* when its test accuracy reaches 0.95 at some epoch of the budget. Per
M, the critical size n*(M) is where the fraction of seeds that generalise crosses 50 %
(linear interpolation in log n); n*(M) is then fitted, with one free constant each, by
a * M ln M, a * M^1.5 and a * M^2, and by a free power law a * M^beta.

    python experiments/scaling_law.py --out results/scaling-law
    python experiments/scaling_law.py --replot results/scaling-law   # redraw without training
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.ticker import FuncFormatter

from grokjax import results
from grokjax.analysis import first_epoch
from grokjax.cli import OneLineErrorParser, float_list, int_list
from grokjax.config import PRESETS, ConfigError, SweepConfig
from grokjax.driver import enable_compilation_cache, run_sweep
from grokjax.train import Hparams, chosen_runs_hparams

CRITICAL_CONSTANT = 2.7482  # the authors' n = c * M * ln M
GENERALISED = 0.95  # test accuracy that counts as generalised
LAWS = {  # candidate shapes of n*(M), each with one free constant
    "M ln M": lambda m: m * np.log(m),
    "M^1.5": lambda m: m**1.5,
    "M^2": lambda m: m**2.0,
}


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    moduli: tuple[int, ...] = (23, 31, 41, 53, 71)
    ratios: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # multiples of c * M * ln M
    seeds: int = 5
    epochs: int = 3000
    hidden: int = 512
    wd: float = 1e-4
    lr: float = 1e-3
    constant: float = CRITICAL_CONSTANT
    max_train_frac: float = 0.9  # sizes above this share of the M^2 pairs are capped (small M)

    def __post_init__(self):
        if not self.moduli or any(m < 5 for m in self.moduli):
            raise ConfigError(f"moduli must be integers >= 5, got {self.moduli}")
        if not self.ratios or any(r <= 0 for r in self.ratios):
            raise ConfigError(f"ratios must be positive, got {self.ratios}")
        if self.seeds < 1 or self.epochs < 1 or self.hidden < 1:
            raise ConfigError("seeds, epochs and hidden must be >= 1")
        if not self.lr > 0 or not self.wd >= 0:
            raise ConfigError(f"lr must be positive and wd non-negative, got lr {self.lr}, wd {self.wd}")
        if not 0 < self.max_train_frac < 1:
            raise ConfigError(f"max_train_frac must lie in (0, 1), got {self.max_train_frac}")


def train_sizes(m: int, config: ScalingConfig) -> np.ndarray:
    """Training-set sizes for modulus m: each ratio times c * m * ln m, capped at
    ``max_train_frac`` of the m^2 pairs and floored at one pair; duplicates after capping
    are kept once."""
    sizes = np.array([r * config.constant * m * np.log(m) for r in config.ratios])
    sizes = np.clip(np.round(sizes), 1, int(config.max_train_frac * m * m)).astype(int)
    return np.unique(sizes)


def sweep_config(m: int, sizes: np.ndarray, config: ScalingConfig) -> SweepConfig:
    """The Li2 preset for modulus m, sized for the largest and smallest training sets;
    no geometry metrics or Fourier snapshots (only accuracy matters here, and they would
    cost most of the time)."""
    n_pairs = m * m
    # fractions a hair above size / n_pairs, so that int(frac * n_pairs) gives the sizes back
    frac = lambda n: (n + 0.5) / n_pairs  # noqa: E731
    li2 = {**PRESETS["li2"], "m": m, "hidden": config.hidden, "epochs": config.epochs, "fourier_every": 0,
           "geometry_every": 0, "wds": (config.wd,), "lrs": (config.lr,), "seeds": tuple(range(config.seeds))}
    # run_group 1 trains the runs one after another inside the compiled chunk: with m up to 71
    # and hidden 512, one run's working set fits a CPU's cache and many at once do not
    return SweepConfig(**li2, train_fracs=(frac(sizes.max()),), min_train_frac=frac(sizes.min()), run_group=1)


def size_seed_hparams(sweep: SweepConfig, sizes: np.ndarray, seeds: int) -> Hparams:
    """One run per (size, seed), size slowest; every run has its own split, init and order."""
    size, seed = (x.ravel() for x in np.meshgrid(sizes, np.arange(seeds), indexing="ij"))
    return chosen_runs_hparams(sweep, seed, np.full(len(seed), sweep.wds[0]), np.full(len(seed), sweep.lrs[0]), size)


def critical_size(sizes: np.ndarray, probability: np.ndarray) -> float:
    """Where the probability of generalising first reaches 0.5, interpolating linearly in
    log n between neighbouring sizes; NaN when it never does or already does at the
    smallest size (the crossing lies outside the grid)."""
    above = np.flatnonzero(probability >= 0.5)
    if len(above) == 0 or above[0] == 0:
        return float("nan")
    i = above[0]
    low, high = np.log(sizes[i - 1]), np.log(sizes[i])
    t = (0.5 - probability[i - 1]) / (probability[i] - probability[i - 1])
    return float(np.exp(low + t * (high - low)))


def fit_laws(moduli: np.ndarray, critical: np.ndarray) -> dict:
    """Least squares in log space: for each law g, log n* = log a + log g(M), and the free
    power law log n* = log a + beta log M; with the RMS log residual of each."""
    known = ~np.isnan(critical)
    m, log_n = moduli[known].astype(float), np.log(critical[known])
    fits = {}
    if known.sum() < 2:
        return fits
    for name, law in LAWS.items():
        log_a = np.mean(log_n - np.log(law(m)))
        residual = log_n - log_a - np.log(law(m))
        fits[name] = {"a": float(np.exp(log_a)), "rms_log_residual": float(np.sqrt(np.mean(residual**2)))}
    beta, log_a = np.polyfit(np.log(m), log_n, 1)
    residual = log_n - log_a - beta * np.log(m)
    fits["M^beta"] = {"a": float(np.exp(log_a)), "beta": float(beta), "rms_log_residual": float(np.sqrt(np.mean(residual**2)))}
    return fits


def plot(table: dict[str, np.ndarray], critical: dict[int, float], fits: dict, config: ScalingConfig):
    """Left: probability of generalising over (M, n) as coloured squares, the c M ln M
    curve, the 50 % crossings and the fitted laws. Right: the same probabilities against
    n / (c M ln M), one line per M: under the paper's law they cross 0.5 together."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 6), layout="constrained")
    ax, collapse = fig.subplots(1, 2, width_ratios=(1.25, 1))
    points = ax.scatter(table["m"], table["n_train"], c=table["probability"], cmap="viridis", vmin=0, vmax=1,
                        marker="s", s=90, edgecolors="k", linewidths=0.4)
    fig.colorbar(points, ax=ax, label=f"fraction of {config.seeds} seeds reaching test acc {GENERALISED}")
    grid = np.linspace(min(config.moduli) * 0.9, max(config.moduli) * 1.1, 200)
    ax.plot(grid, config.constant * grid * np.log(grid), "r-", lw=1.5, label=f"{config.constant} M ln M (paper)")
    ax.plot(grid, grid**2, "k:", lw=1, label="M² (all pairs)")
    moduli = np.array(sorted(critical))
    values = np.array([critical[m] for m in moduli])
    ax.plot(moduli, values, "D", color="orange", mec="k", ms=7, label="measured n* (50 % crossing)", zorder=5)
    for name, style in (("M ln M", "--"), ("M^1.5", "-."), ("M^2", ":")):
        if name in fits:
            law = LAWS[name]
            ax.plot(grid, fits[name]["a"] * law(grid), style, color="orange", lw=1,
                    label=f"fit {fits[name]['a']:.3g}·{name} (rms log residual {fits[name]['rms_log_residual']:.2f})")
    ax.set_yscale("log")
    ax.set_xlabel("modulus M")
    ax.set_ylabel("training pairs n")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    colours = colormaps["plasma"](np.linspace(0, 0.85, len(moduli)))
    for m, colour in zip(moduli, colours):
        rows = table["m"] == m
        collapse.plot(table["ratio"][rows], table["probability"][rows], "o-", color=colour, label=f"M {m}")
    collapse.axvline(1.0, color="r", lw=1.5, label=f"n = {config.constant} M ln M")
    collapse.axhline(0.5, color="gray", lw=0.8, ls=":")
    collapse.set_xscale("log")
    for axis in (collapse.xaxis.set_major_formatter, collapse.xaxis.set_minor_formatter):
        axis(FuncFormatter(lambda value, _: f"{value:g}"))
    collapse.set_xlabel(f"n / ({config.constant} M ln M)")
    collapse.set_ylabel(f"fraction of seeds reaching test acc {GENERALISED}")
    collapse.set_ylim(-0.03, 1.03)
    collapse.grid(alpha=0.3, which="both")
    collapse.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Li2 network (K {config.hidden}, x², centred MSE, full-batch Adam lr {config.lr:g}, wd {config.wd:g}), "
                 f"{config.epochs}-epoch budget, {config.seeds} seeds per cell", fontsize=11)
    return fig


def train_grid(config: ScalingConfig) -> tuple[dict[str, np.ndarray], dict[int, float]]:
    """Train every (M, n, seed); per run its M, n, seed, first epoch with test accuracy
    >= 0.95 (NaN if none) and final and best test accuracy; and the seconds per M."""
    rows = {name: [] for name in ("m", "n_train", "seed", "first_epoch_generalised", "final_test_acc", "max_test_acc")}
    seconds = {}
    for m in config.moduli:
        sizes = train_sizes(m, config)
        sweep = sweep_config(m, sizes, config)
        hparams = size_seed_hparams(sweep, sizes, config.seeds)
        print(f"M {m}: sizes {sizes.tolist()} x {config.seeds} seeds = {len(hparams.seed)} runs", flush=True)
        start = time.perf_counter()
        test_acc = run_sweep(sweep, hparams, progress=True).metrics["test_acc"]
        seconds[m] = time.perf_counter() - start
        rows["m"] += [m] * len(hparams.seed)
        rows["n_train"] += hparams.n_train.tolist()
        rows["seed"] += hparams.seed.tolist()
        rows["first_epoch_generalised"] += first_epoch(test_acc >= GENERALISED).tolist()
        rows["final_test_acc"] += test_acc[:, -1].tolist()
        rows["max_test_acc"] += test_acc.max(axis=1).tolist()
    return {name: np.array(values) for name, values in rows.items()}, seconds


def analyse(runs: dict[str, np.ndarray], config: ScalingConfig) -> tuple[dict[str, np.ndarray], dict[int, float], dict]:
    """Per (M, n): the fraction of seeds that generalised and their median epoch; per M the
    critical size n*; the fits of n*(M)."""
    table = {name: [] for name in ("m", "n_train", "ratio", "train_frac", "probability", "median_first_epoch")}
    critical = {}
    for m in config.moduli:
        sizes = np.unique(runs["n_train"][runs["m"] == m])
        probability = []
        for n in sizes:
            epochs = runs["first_epoch_generalised"][(runs["m"] == m) & (runs["n_train"] == n)]
            probability.append(np.mean(~np.isnan(epochs)))
            table["m"].append(m)
            table["n_train"].append(n)
            table["ratio"].append(n / (config.constant * m * np.log(m)))
            table["train_frac"].append(n / m**2)
            table["probability"].append(probability[-1])
            table["median_first_epoch"].append(np.nanmedian(epochs) if (~np.isnan(epochs)).any() else np.nan)
        critical[m] = critical_size(sizes, np.array(probability))
    fits = fit_laws(np.array(list(critical)), np.array(list(critical.values())))
    return {name: np.array(values) for name, values in table.items()}, critical, fits


def write_results(out: Path, config: ScalingConfig, runs: dict[str, np.ndarray], seconds: dict, command: str) -> None:
    """runs.csv, table.csv, fit.json, config.json and scaling_law.png; prints the crossings."""
    table, critical, fits = analyse(runs, config)
    results.write_csv(out / "runs.csv", runs)
    results.write_csv(out / "table.csv", table)
    known = lambda x: None if np.isnan(x) else x  # noqa: E731  (JSON has no NaN: a crossing outside the grid is null)
    summary = {
        "critical_n": {str(m): known(critical[m]) for m in critical},
        "critical_n_over_M_ln_M": {str(m): known(critical[m] / (m * np.log(m))) for m in critical},
        "fits": fits,
        "seconds_per_modulus": {str(m): round(s, 1) for m, s in seconds.items()},
    }
    results.write_atomic(out / "fit.json", (json.dumps(summary, indent=2) + "\n").encode())
    results.write_atomic(out / "config.json", (json.dumps({"config": dataclasses.asdict(config), "command": command,
                                                           "environment": results.environment()}, indent=2) + "\n").encode())
    plot(table, critical, fits, config).savefig(out / "scaling_law.png", dpi=100)

    print(f"\n{'M':>4} {'n*':>8} {'n*/(M ln M)':>12}")
    for m in config.moduli:
        print(f"{m:>4} {critical[m]:>8.1f} {critical[m] / (m * np.log(m)):>12.3f}")
    for name, fit in fits.items():
        extra = f", beta {fit['beta']:.2f}" if "beta" in fit else ""
        print(f"fit {name}: a {fit['a']:.4g}{extra}, rms log residual {fit['rms_log_residual']:.3f}")
    print(f"total {sum(seconds.values()):.0f} s; results in {out}")


def replot(folder: Path) -> None:
    """Redo the analysis files and the figure of a results folder from its runs.csv and
    config.json, without training (keeping its timings and command)."""
    record = json.loads((folder / "config.json").read_text())
    config = ScalingConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items()})
    data = np.genfromtxt(folder / "runs.csv", delimiter=",", names=True)
    runs = {name: data[name] for name in data.dtype.names}
    runs["m"] = runs["m"].astype(int)
    runs["n_train"] = runs["n_train"].astype(int)
    runs["seed"] = runs["seed"].astype(int)
    seconds = {int(m): s for m, s in json.loads((folder / "fit.json").read_text())["seconds_per_modulus"].items()}
    write_results(folder, config, runs, seconds, record["command"])


def main(argv: list[str] | None = None) -> int:
    d = ScalingConfig()
    parser = OneLineErrorParser(prog="python experiments/scaling_law.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--moduli", type=int_list, default=d.moduli, help="comma-separated moduli M (default %(default)s)")
    parser.add_argument("--ratios", type=float_list, default=d.ratios, help="training sizes as multiples of c M ln M (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=d.seeds, help="seeds per (M, n) (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help="epoch budget (default %(default)s)")
    parser.add_argument("--hidden", type=int, default=d.hidden, help="hidden width K (default %(default)s)")
    parser.add_argument("--wd", type=float, default=d.wd, help="weight decay (default %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="learning rate (default %(default)s)")
    parser.add_argument("--out", help="results folder (must not exist or be empty)")
    parser.add_argument("--replot", metavar="DIR", type=Path,
                        help="redo the analysis and figure of DIR from its runs.csv, without training")
    args = parser.parse_args(argv)
    if args.replot is not None:
        if not (args.replot / "runs.csv").is_file():
            parser.exit(2, f"{parser.prog}: error: {args.replot} has no runs.csv: not a scaling-law results folder\n")
        replot(args.replot)
        return 0
    if args.out is None:
        parser.exit(2, f"{parser.prog}: error: --out is required (or --replot DIR)\n")
    try:
        config = ScalingConfig(args.moduli, args.ratios, args.seeds, args.epochs, args.hidden, args.wd, args.lr)
        out = results.new_results_dir(args.out)
    except (ConfigError, FileExistsError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    enable_compilation_cache()
    command = shlex.join(["python", "experiments/scaling_law.py", *(sys.argv[1:] if argv is None else argv)])

    runs, seconds = train_grid(config)
    write_results(out, config, runs, seconds, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
