"""``python -m grokjax.sweep``: train a seeds x wd x lr grid at once, print the grokking
table, write a results folder.

The configuration is resolved once, here: the defaults, then a ``--config`` TOML file,
then (with ``--resume``) the folder's saved configuration, then the flags given on the
command line. Every error in it is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import sys
import tomllib
from pathlib import Path

from grokjax.config import (
    ACTIVATIONS,
    LOSSES,
    MODELS,
    OPS,
    OPTIMIZERS,
    PRESETS,
    ConfigError,
    OneLineErrorParser,
    SweepConfig,
    differing_fields,
    sweep_config_from_mapping,
)

DEFAULTS = SweepConfig()
CHECKPOINT = "checkpoint.npz"
INTERRUPTED = 130  # exit status after Ctrl-C, as shells report it


def float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def run_group_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """Configuration flags default to None, meaning "not given", so that a config file or
    a resumed folder can supply them; the help shows the built-in defaults."""
    d = DEFAULTS
    parser = OneLineErrorParser(
        prog="python -m grokjax.sweep",
        description="Train every run of a seeds x weight-decay x learning-rate grid of networks "
        "on (a op b) mod m in one compiled JAX program; print per (wd, lr) how many seeds grokked "
        "and when; write config.json, metrics.npz, the analysis tables and figures.",
    )
    parser.add_argument("--preset", choices=tuple(PRESETS),
                        help="study: the PyTorch study's ModularNet (the defaults below); li2: the Li2 paper's network "
                        "(one-hot inputs, x^2, centred MSE, full batch, m 23, hidden 512, 3000 epochs, wd 0 and 1e-4, "
                        "Fourier snapshots every 100 epochs). Flags and --config keys override a preset")
    task = parser.add_argument_group("task")
    task.add_argument("--m", type=int, help=f"modulus: inputs and labels are 0..m-1 (default {d.m})")
    task.add_argument("--op", choices=OPS, help=f"the operation: a+b, a-b, a*b, a/b (div: prime m, b != 0) or "
                      f"a^2+ab+b^2 (x2xyy2), all mod m (default {d.op})")
    task.add_argument("--train-frac", type=float, help=f"fraction of all pairs used for training (default {d.train_frac})")
    model = parser.add_argument_group("model and training")
    model.add_argument("--model", choices=MODELS, help=f"modularnet: learned embeddings and biases (the study's); "
                       f"li2: fixed one-hot inputs, no biases (default {d.model})")
    model.add_argument("--activation", choices=ACTIVATIONS, help=f"hidden activation; square is x^2 (default {d.activation})")
    model.add_argument("--loss", choices=LOSSES, help=f"ce: cross-entropy; mse: squared error of the class-centred "
                       f"outputs against one-hot - 1/m, summed over classes (default {d.loss})")
    model.add_argument("--hidden", type=int, help=f"hidden width; also the embedding width of modularnet (default {d.hidden})")
    model.add_argument("--epochs", type=int, help=f"epochs per run (default {d.epochs})")
    model.add_argument("--batch-size", type=int, help=f"minibatch size; 0 means full batch; larger than the train set is refused (default {d.batch_size})")
    model.add_argument("--optimizer", choices=OPTIMIZERS,
                       help=f"adam: torch.optim.Adam with coupled L2 weight decay; adamw: decoupled; sgd: plain SGD with L2 (default {d.optimizer})")
    grid = parser.add_argument_group("grid (one run per seed x wd x lr, all trained at once)")
    grid.add_argument("--seeds", type=int, help=f"N: seeds 0..N-1 (split, init and batch order) (default {len(d.seeds)})")
    grid.add_argument("--wd", type=float_list, help=f"comma-separated weight decays (default {','.join(f'{w:g}' for w in d.wds)})")
    grid.add_argument("--lr", type=float_list, help=f"comma-separated learning rates (default {','.join(f'{v:g}' for v in d.lrs)})")
    grid.add_argument("--data-seed", type=int, help="one train/test split for all runs (default: each run's seed)")
    run = parser.add_argument_group("running")
    run.add_argument("--config", help="a TOML file of configuration keys (preset and the fields of the flags above: m, op, "
                     "model, activation, loss, hidden, train_frac, batch_size, epochs, optimizer, fourier_every, "
                     "geometry_every, chunk_epochs, run_group, dtype, seeds, wds, lrs, data_seed); flags override it")
    run.add_argument("--fourier-every", type=int, help="snapshot every run's Fourier features every N epochs into "
                     "fourier.npz, with a figure; snapshots fall on chunk ends, so chunks shrink to a divisor of N "
                     f"(default {d.fourier_every}: none)")
    run.add_argument("--geometry-every", type=int, help="measure feature_diversity and the three cosine metrics every N "
                     f"epochs only, NaN between (they cost most of a sweep's time; 0: never) (default {d.geometry_every})")
    run.add_argument("--chunk-epochs", type=int, help=f"epochs per compiled call: progress and checkpoint granularity (default {d.chunk_epochs})")
    run.add_argument("--run-group", type=run_group_arg, help="train this many runs at a time, looping over groups inside the "
                     "compiled chunk; on a CPU a group of 16-32 keeps the work in cache for large sweeps; 'auto' times one "
                     "epoch at each of 0, 64, 32, ..., 1 first and takes the fastest (default 0: all runs at once)")
    run.add_argument("--checkpoint-every", type=int, default=1, help="save a checkpoint every N chunks (default 1)")
    run.add_argument("--out", default=None, help="results folder (default: a new results/sweep-<time>); an existing one is refused")
    run.add_argument("--resume", metavar="DIR", help="continue the interrupted sweep in DIR from its last checkpoint")
    run.add_argument("--overwrite", action="store_true", help="replace an existing results folder given by --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    cluster = parser.add_argument_group("several processes (multi-host)")
    cluster.add_argument("--distributed", action="store_true",
                         help="join a multi-process sweep through jax.distributed.initialize(): every process runs the "
                         "same command, trains the runs of its own devices and writes its shard; process 0 merges them "
                         "and writes the results (needs --out; no checkpoints)")
    cluster.add_argument("--coordinator", help="host:port of process 0 (default: from the cluster environment)")
    cluster.add_argument("--num-processes", type=int, help="number of processes (default: from the cluster environment)")
    cluster.add_argument("--process-id", type=int, help="this process's index (default: from the cluster environment)")
    return parser


def given_fields(args: argparse.Namespace) -> dict:
    """The configuration fields set by flags on the command line."""
    fields = {
        "preset": args.preset, "m": args.m, "op": args.op, "model": args.model, "activation": args.activation,
        "loss": args.loss, "hidden": args.hidden, "train_frac": args.train_frac, "batch_size": args.batch_size,
        "epochs": args.epochs, "optimizer": args.optimizer, "fourier_every": args.fourier_every,
        "geometry_every": args.geometry_every, "chunk_epochs": args.chunk_epochs,
        "run_group": None if args.run_group == "auto" else args.run_group,
        "seeds": args.seeds, "wds": args.wd, "lrs": args.lr, "data_seed": args.data_seed,
    }
    return {name: value for name, value in fields.items() if value is not None}


def read_toml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as error:
        raise ConfigError(f"cannot read --config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None


def read_saved_config(folder: Path) -> SweepConfig:
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"--resume {folder}: no config.json there, so nothing to resume")
    return sweep_config_from_mapping(json.loads(path.read_text())["config"], str(path))


def resolve(args: argparse.Namespace) -> tuple[SweepConfig, Path | None]:
    """The configuration and, with --resume, the folder to continue."""
    if args.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    from_file = read_toml(args.config) if args.config else {}
    if from_file:
        sweep_config_from_mapping(from_file, args.config)  # errors in the file name the file
    overrides = {**from_file, **given_fields(args)}
    if overrides.get("min_train_frac") is not None:
        raise ConfigError("min_train_frac sizes arrays for runs with their own training-set sizes (the Python API, "
                          "as experiments/scaling_law.py uses it); every run of this command trains on train_frac")
    if args.resume is None:
        return sweep_config_from_mapping(overrides, "the command line"), None
    folder = Path(args.resume)
    saved = read_saved_config(folder)
    differ = differing_fields(saved, sweep_config_from_mapping(overrides, "the command line", base=saved))
    if differ:
        raise ConfigError(f"--resume {folder}: its configuration differs from the one given in {', '.join(differ)}")
    if (folder / "metrics.npz").exists() and not (folder / CHECKPOINT).exists():
        raise ConfigError(f"--resume {folder}: that sweep already finished")
    return saved, folder


def join_processes(args: argparse.Namespace) -> int:
    """Connect this process to the others (jax.distributed); returns its index."""
    import jax

    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id)
    return jax.process_index()


def prepare_folder(args: argparse.Namespace) -> Path:
    from grokjax import results

    if args.out is not None and args.overwrite and Path(args.out).exists():
        if not (Path(args.out) / "config.json").exists():
            raise FileExistsError(f"--overwrite: {args.out} is not a grokjax results folder (no config.json); remove it yourself")
        shutil.rmtree(args.out)
    return results.new_results_dir(args.out)


def pick_run_group(config, candidates=None):
    """The configuration with the run-group size that trains this sweep fastest here, and
    the measured milliseconds per run-epoch of each size (0: all runs at once);
    ``candidates`` default to :data:`grokjax.train.RUN_GROUP_CANDIDATES`."""
    import dataclasses

    from grokjax.train import RUN_GROUP_CANDIDATES, grid_hparams, time_run_groups

    print("--run-group auto: compiling and timing one epoch at each group size", flush=True)
    timings = time_run_groups(config, grid_hparams(config), candidates or RUN_GROUP_CANDIDATES)
    best = min(timings, key=timings.get)
    measured = {group: round(1e3 * seconds, 4) for group, seconds in timings.items()}
    print("run groups, ms per run-epoch: " + ", ".join(f"{group or 'all'} {ms:.3g}" for group, ms in measured.items())
          + f"; using {best or 'all'}", flush=True)
    return dataclasses.replace(config, run_group=best), measured


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.resume is not None and (args.out is not None or args.overwrite):
            raise ConfigError("--resume continues its own folder; it takes neither --out nor --overwrite")
        if args.distributed and (args.out is None or args.resume is not None):
            raise ConfigError("--distributed needs --out (one folder that every process names) and cannot --resume")
        if args.run_group == "auto" and (args.distributed or args.resume is not None):
            raise ConfigError("--run-group auto times a new single-process sweep; give a number with --distributed, "
                              "and --resume keeps the folder's own")
        config, resume_folder = resolve(args)
        process = join_processes(args) if args.distributed else 0
        out = resume_folder or (prepare_folder(args) if process == 0 else Path(args.out))
    except (ConfigError, FileExistsError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")

    # Imported after validation so that a bad flag answers at once, before JAX starts.
    if config.dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
    from grokjax import analysis, report, results
    from grokjax.config import config_hash
    from grokjax.train import SweepInterrupted, enable_compilation_cache, run_sweep, snapshot_epochs

    enable_compilation_cache()
    auto_record = {}  # with --run-group auto: what each size measured, kept in config.json
    if args.run_group == "auto":
        config, measured = pick_run_group(config)
        auto_record = {"run_group_auto_ms_per_run_epoch": {str(group): ms for group, ms in measured.items()}}
    command = shlex.join(["python", "-m", "grokjax.sweep", *(sys.argv[1:] if argv is None else argv)])
    if resume_folder is None and process == 0:
        results.write_config(out / "config.json", config, command, {"config_hash": config_hash(config), **auto_record})
    print(
        f"grokjax: {config.n_runs} runs ({len(config.seeds)} seeds x {len(config.wds)} wd x {len(config.lrs)} lr), "
        f"{config.epochs} epochs, m={config.m} op={config.op} model={config.model} activation={config.activation} "
        f"loss={config.loss} hidden={config.hidden} batch={config.batch_size or 'full'} optimizer={config.optimizer}"
        + (f"; resuming {out}" if resume_folder else ""),
        flush=True,
    )

    interrupts = []

    def on_interrupt(signum, frame):
        if interrupts:  # a second Ctrl-C aborts at once; the last checkpoint stays
            raise KeyboardInterrupt
        interrupts.append(signum)
        print("\ninterrupt: finishing the current chunk and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr, flush=True)

    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    try:
        sweep = run_sweep(config, progress=not args.quiet and process == 0,
                          checkpoint=None if args.distributed else out / CHECKPOINT,
                          checkpoint_every=args.checkpoint_every, stop_requested=lambda: bool(interrupts))
    except SweepInterrupted as stopped:
        print(f"stopped before epoch {stopped.next_epoch + 1} of {config.epochs}; checkpoint saved. "
              f"Continue with: python -m grokjax.sweep --resume {shlex.quote(str(out))}", file=sys.stderr)
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous_handler)

    metrics, fourier = sweep.metrics, sweep.fourier
    if args.distributed:
        import jax

        results.write_process_shard(out, process, sweep.local_runs, {**metrics, **fourier})
        if process != 0:
            print(f"process {process}: wrote its {sweep.local_runs.sum()} runs to {out}; process 0 merges")
            return 0
        merged = results.merge_process_shards(out, jax.process_count(), {**metrics, **fourier})
        metrics, fourier = ({name: merged[name] for name in part} for part in (metrics, fourier))
    timing = {
        **auto_record,
        "config_hash": config_hash(config),
        "timing": {
            "compile_seconds": round(sweep.compile_seconds, 3),
            "train_seconds": round(sweep.train_seconds, 3),
            "ms_per_run_epoch": round(1e3 * sweep.train_seconds / (config.n_runs * config.epochs), 3),
        },
    }
    if resume_folder is not None:
        timing["resumed_by"] = command
        started = json.loads((out / "config.json").read_text())
        command = started["command"]
        timing.update({key: value for key, value in started.items() if key.startswith("run_group_auto")})
    results.write_metrics(out / "metrics.npz", sweep.hparams, metrics)
    if fourier:
        results.write_fourier(out / "fourier.npz", snapshot_epochs(config), fourier)
    results.write_config(out / "config.json", config, command, timing)
    _, rows, fit = report.write_report(out, config.to_dict(), sweep.hparams, metrics)
    (out / CHECKPOINT).unlink(missing_ok=True)  # the results are complete; the state is no longer needed

    print()
    print(analysis.format_group_table(rows, fit))
    print(
        f"\ncompile {sweep.compile_seconds:.1f} s, train {sweep.train_seconds:.1f} s "
        f"({timing['timing']['ms_per_run_epoch']:.1f} ms per run-epoch); results in {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
