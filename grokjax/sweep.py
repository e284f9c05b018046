"""``python -m grokjax.sweep``: train a seeds x wd x lr grid at once, print the grokking
table, write a results folder."""

from __future__ import annotations

import argparse
import shlex
import sys

from grokjax.config import OPS, OPTIMIZERS, ConfigError, SweepConfig

DEFAULTS = SweepConfig()


def float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grokjax.sweep",
        description="Train every run of a seeds x weight-decay x learning-rate grid of ModularNets "
        "on (a op b) mod m in one compiled JAX program; print per (wd, lr) how many seeds grokked "
        "and when; write config.json, metrics.npz and summary.csv.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    task = parser.add_argument_group("task")
    task.add_argument("--m", type=int, default=DEFAULTS.m, help="modulus: inputs and labels are 0..m-1")
    task.add_argument("--op", choices=OPS, default=DEFAULTS.op, help="the operation; div needs a prime m and omits b=0")
    task.add_argument("--train-frac", type=float, default=DEFAULTS.train_frac, help="fraction of all pairs used for training")
    model = parser.add_argument_group("model and training")
    model.add_argument("--hidden", type=int, default=DEFAULTS.hidden, help="embedding and hidden width h")
    model.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help="epochs per run")
    model.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="minibatch size; 0 means full batch")
    model.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=DEFAULTS.optimizer,
        help="adam: torch.optim.Adam with coupled L2 weight decay; adamw: decoupled; sgd: plain SGD with L2",
    )
    grid = parser.add_argument_group("grid (one run per seed x wd x lr, all trained at once)")
    grid.add_argument("--seeds", type=int, default=len(DEFAULTS.seeds), help="N: seeds 0..N-1 (split, init and batch order)")
    grid.add_argument("--wd", type=float_list, default=DEFAULTS.wds, help="comma-separated weight decays")
    grid.add_argument("--lr", type=float_list, default=DEFAULTS.lrs, help="comma-separated learning rates")
    grid.add_argument("--data-seed", type=int, default=None, help="one train/test split for all runs (default: each run's seed)")
    run = parser.add_argument_group("running")
    run.add_argument("--chunk-epochs", type=int, default=DEFAULTS.chunk_epochs, help="epochs per compiled call (progress granularity)")
    run.add_argument("--out", default=None, help="results folder (default: a new results/sweep-<time>); never overwritten")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> SweepConfig:
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    return SweepConfig(
        m=args.m,
        op=args.op,
        hidden=args.hidden,
        train_frac=args.train_frac,
        batch_size=args.batch_size,
        epochs=args.epochs,
        optimizer=args.optimizer,
        chunk_epochs=args.chunk_epochs,
        seeds=tuple(range(args.seeds)),
        wds=args.wd,
        lrs=args.lr,
        data_seed=args.data_seed,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")

    # Imported after validation so that a bad flag answers at once, before JAX starts.
    from grokjax import analysis, report, results
    from grokjax.train import run_sweep

    try:
        out = results.new_results_dir(args.out)
    except FileExistsError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    command = shlex.join(["python", "-m", "grokjax.sweep", *(sys.argv[1:] if argv is None else argv)])
    results.write_config(out / "config.json", config, command)
    print(
        f"grokjax: {config.n_runs} runs ({len(config.seeds)} seeds x {len(config.wds)} wd x {len(config.lrs)} lr), "
        f"{config.epochs} epochs, m={config.m} op={config.op} hidden={config.hidden} "
        f"batch={config.batch_size or 'full'} optimizer={config.optimizer}",
        flush=True,
    )
    sweep = run_sweep(config, progress=not args.quiet)
    timing = {
        "timing": {
            "compile_seconds": round(sweep.compile_seconds, 3),
            "train_seconds": round(sweep.train_seconds, 3),
            "ms_per_run_epoch": round(1e3 * sweep.train_seconds / (config.n_runs * config.epochs), 3),
        }
    }
    results.write_metrics(out / "metrics.npz", sweep.hparams, sweep.metrics)
    results.write_config(out / "config.json", config, command, timing)
    _, rows, fit = report.write_report(out, config.to_dict(), sweep.hparams, sweep.metrics)

    print()
    print(analysis.format_group_table(rows, fit))
    print(
        f"\ncompile {sweep.compile_seconds:.1f} s, train {sweep.train_seconds:.1f} s "
        f"({timing['timing']['ms_per_run_epoch']:.1f} ms per run-epoch); results in {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
