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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time

import numpy as np

from grokjax import results
from grokjax.analysis import first_epoch
from grokjax.config import PRESETS, ConfigError, OneLineErrorParser, SweepConfig
from grokjax.sweep import float_list
from grokjax.train import Hparams, enable_compilation_cache, run_sweep

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
    # run_group 1 trains the runs one after another inside the compiled chunk: on a 2-core CPU,
    # 30 runs at M 71 took 21 s per 100 epochs so, against 40 s all at once (cache, not FLOPs)
    return SweepConfig(**li2, train_frac=frac(sizes.max()), min_train_frac=frac(sizes.min()), run_group=1)


def size_seed_hparams(sweep: SweepConfig, sizes: np.ndarray, seeds: int) -> Hparams:
    """One run per (size, seed), size slowest; every run has its own split, init and order."""
    size, seed = (x.ravel() for x in np.meshgrid(sizes, np.arange(seeds), indexing="ij"))
    return Hparams(
        seed=seed.astype(np.int32),
        data_seed=seed.astype(np.int32),
        lr=np.full(len(seed), sweep.lrs[0], sweep.dtype),
        wd=np.full(len(seed), sweep.wds[0], sweep.dtype),
        n_train=size.astype(np.int32),
    )


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
    """Probability of generalising over (M, n) as coloured squares, the c M ln M curve,
    the 50 % crossings and the fitted laws."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 6), layout="constrained")
    ax = fig.subplots()
    points = ax.scatter(table["m"], table["n_train"], c=table["probability"], cmap="viridis", vmin=0, vmax=1,
                        marker="s", s=160, edgecolors="k", linewidths=0.4)
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
    ax.set_title(f"Li2 network (K {config.hidden}, x², centred MSE, full-batch Adam lr {config.lr:g}, wd {config.wd:g}), "
                 f"{config.epochs} epochs", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, which="both")
    return fig


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


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
    parser.add_argument("--out", required=True, help="results folder (must not exist or be empty)")
    args = parser.parse_args(argv)
    try:
        config = ScalingConfig(args.moduli, args.ratios, args.seeds, args.epochs, args.hidden, args.wd, args.lr)
        out = results.new_results_dir(args.out)
    except (ConfigError, FileExistsError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    enable_compilation_cache()
    command = shlex.join(["python", "experiments/scaling_law.py", *(sys.argv[1:] if argv is None else argv)])

    rows = {name: [] for name in ("m", "n_train", "seed", "first_epoch_generalised", "final_test_acc", "max_test_acc")}
    seconds = {}
    for m in config.moduli:
        sizes = train_sizes(m, config)
        sweep = sweep_config(m, sizes, config)
        hparams = size_seed_hparams(sweep, sizes, config.seeds)
        print(f"M {m}: sizes {sizes.tolist()} x {config.seeds} seeds = {len(hparams.seed)} runs", flush=True)
        start = time.perf_counter()
        result = run_sweep(sweep, hparams, progress=True)
        seconds[m] = time.perf_counter() - start
        test_acc = result.metrics["test_acc"]
        rows["m"] += [m] * len(hparams.seed)
        rows["n_train"] += hparams.n_train.tolist()
        rows["seed"] += hparams.seed.tolist()
        rows["first_epoch_generalised"] += first_epoch(test_acc >= GENERALISED).tolist()
        rows["final_test_acc"] += test_acc[:, -1].tolist()
        rows["max_test_acc"] += test_acc.max(axis=1).tolist()
    runs = {name: np.array(values) for name, values in rows.items()}

    table = {name: [] for name in ("m", "n_train", "ratio", "train_frac", "probability", "median_first_epoch")}
    critical = {}
    for m in config.moduli:
        sizes = np.unique(runs["n_train"][runs["m"] == m])
        probability = []
        for n in sizes:
            members = (runs["m"] == m) & (runs["n_train"] == n)
            epochs = runs["first_epoch_generalised"][members]
            probability.append(np.mean(~np.isnan(epochs)))
            table["m"].append(m)
            table["n_train"].append(n)
            table["ratio"].append(n / (config.constant * m * np.log(m)))
            table["train_frac"].append(n / m**2)
            table["probability"].append(probability[-1])
            table["median_first_epoch"].append(np.nanmedian(epochs) if (~np.isnan(epochs)).any() else np.nan)
        critical[m] = critical_size(sizes, np.array(probability))
    table = {name: np.array(values) for name, values in table.items()}
    fits = fit_laws(np.array(list(critical)), np.array(list(critical.values())))

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
    fig = plot(table, critical, fits, config)
    fig.savefig(out / "scaling_law.png", dpi=100)

    print(f"\n{'M':>4} {'n*':>8} {'n*/(M ln M)':>12}")
    for m in config.moduli:
        print(f"{m:>4} {critical[m]:>8.1f} {critical[m] / (m * np.log(m)):>12.3f}")
    for name, fit in fits.items():
        extra = f", beta {fit['beta']:.2f}" if "beta" in fit else ""
        print(f"fit {name}: a {fit['a']:.4g}{extra}, rms log residual {fit['rms_log_residual']:.3f}")
    print(f"total {sum(seconds.values()):.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
