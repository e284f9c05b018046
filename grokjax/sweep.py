"""``python -m grokjax.sweep``: train a grid of runs at once (seeds x data seeds x training
fractions x wd x lr vmapped in one compiled program, one program per combination of the
static flags given several values), print the grokking table, write one results folder.

The configuration is resolved once, here: the defaults, then a ``--config`` TOML file,
then (with ``--resume``) the folder's saved configuration, then the flags given on the
command line. Every error in it is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
from pathlib import Path

from grokjax.cli import OneLineErrorParser, float_list, int_list, name_list
from grokjax.config import (
    ACTIVATIONS,
    GRADIENT_FILTERS,
    LOGIT_DTYPES,
    LOSSES,
    MODELS,
    NETWORK_FIELDS,
    OPS,
    OPTIMIZERS,
    PRESETS,
    TASKS,
    TRANSFORMER_STYLES,
    ConfigError,
    SweepConfig,
    SweepPlan,
    differing_fields,
    field_names,
    grid_plan,
    read_config_file,
    sweep_plan_from_mapping,
)
from grokjax.files import DamagedFile, read_json
from grokjax.results import partial_files

DEFAULTS = SweepConfig()


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
        description="Train every run of a grid of networks on (a op b) mod m (seeds x data seeds x training "
        "fractions x weight decays x learning rates) in one compiled JAX program; every task and model flag also "
        "takes a comma-separated list, one compiled program per combination, all in one results folder. Print per "
        "group of seeds how many grokked and when; write config.json, metrics.npz, the analysis tables and figures.",
    )
    parser.add_argument("--preset", choices=tuple(PRESETS),
                        help="study: the PyTorch study's ModularNet (the defaults below); study-grid: the study's whole "
                        "experiment, hidden 32,64,128 x lr 1e-3,5e-4 x wd 0,1e-4, 1000 epochs, seed 0 (--seeds N for "
                        "more); li2: the Li2 paper's network "
                        "(one-hot inputs, x^2, centred MSE, full batch, m 23, hidden 512, 3000 epochs, wd 0 and 1e-4, "
                        "Fourier snapshots every 100 epochs); nanda: Nanda et al.'s one-layer transformer (a+b mod 113, "
                        "30%% of the pairs, full-batch AdamW lr 1e-3 wd 1 betas 0.9/0.98, 15000 epochs, test and "
                        "progress measures every 100); power: Power et al.'s two-layer transformer (x/y mod 97, half the "
                        "pairs, minibatch 512, 10-step warm-up, 10000 epochs); transformer-cpu: nanda at m 59 and half "
                        "the pairs, 4000 epochs, minutes on a CPU; prieto: Prieto et al.'s MLP (one-hot a+b mod 113, 40%% of "
                        "the pairs, two hidden layers of 200, no biases, full-batch AdamW lr 0.01 betas 0.9/0.99, no "
                        "weight decay); grokfast: Lee et al.'s grokfast setting (their decoder, two layers, GELU; x*y mod 97 for "
                        "y != 0, half of the 9312 pairs, minibatch 512, Adam lr 1e-3 betas 0.9/0.98, 10-step warm-up, no weight "
                        "decay, 30000 epochs of 10 steps: their 3e5 steps). Flags and --config keys override a preset")
    task = parser.add_argument_group("task")
    task.add_argument("--task", choices=TASKS, help="arithmetic: (a op b) mod m on token pairs; parity: sparse parity, "
                      "the label the parity of --parity-k secret bits of --n-bits random bits, --n-samples inputs, the "
                      f"secret bits and inputs drawn from each run's data seed, trained by --model mlp (default {d.task})")
    task.add_argument("--n-bits", type=int_list, help=f"parity: bits per input (default {d.n_bits})")
    task.add_argument("--parity-k", type=int_list, help=f"parity: secret bits (default {d.parity_k})")
    task.add_argument("--n-samples", type=int_list, help=f"parity: inputs drawn, train and test together (default "
                      f"{d.n_samples})")
    task.add_argument("--m", type=int_list, help=f"modulus: inputs and labels are 0..m-1 (default {d.m})")
    task.add_argument("--op", type=name_list, help=f"the operation: {', '.join(OPS)}: a+b, a-b, a*b, a*b for b != 0 "
                      f"(Lee et al.'s grokfast task), a/b (div: prime m, b != 0) or a^2+ab+b^2, all mod m; or, with m 120, "
                      f"composition in the permutation group S5: "
                      f"s5 x∘y, s5conj x∘y∘x⁻¹, s5aba x∘y∘x (default {d.op})")
    task.add_argument("--train-frac", type=float_list, help="comma-separated fractions of all pairs used for training, "
                      f"traced per run (default {d.train_fracs[0]})")
    model = parser.add_argument_group("model and training")
    model.add_argument("--model", type=name_list, help=f"{' or '.join(MODELS)}: modularnet: learned embeddings and biases "
                       f"(the study's); li2: fixed one-hot inputs, one hidden layer, no biases; mlp: the same with --layers "
                       f"hidden layers; transformer: tokens a, b, = through causal "
                       f"attention and a ReLU MLP, read at the last position (default {d.model})")
    model.add_argument("--activation", type=name_list, help=f"hidden activation: {', '.join(ACTIVATIONS)}; square is x^2 "
                       f"(default {d.activation})")
    model.add_argument("--loss", type=name_list, help=f"{', '.join(LOSSES)}: cross-entropy as PyTorch computes it; the "
                       "same as log1p(sum_{j != y} exp(z_j - z_y)), which keeps a loss below float32's epsilon from rounding "
                       "to 0 (the transformer presets' choice); StableMax cross-entropy (Prieto et al.: x+1 for x >= 0, "
                       "1/(1-x) below, in place of exp); or squared error of the class-centred outputs against "
                       f"one-hot - 1/m, summed over classes (default {d.loss})")
    model.add_argument("--logit-dtype", type=name_list, help=f"{', '.join(LOGIT_DTYPES)}: the precision the loss (and the "
                       "softmax whose collapse is measured) is computed in; auto: the model's, float64 for stablemax, as "
                       f"Prieto et al. compute it (default {d.logit_dtype})")
    model.add_argument("--hidden", type=int_list, help=f"modularnet/li2 hidden width; also the embedding width of modularnet "
                       f"(default {d.hidden})")
    model.add_argument("--layers", type=int_list, help=f"transformer: blocks of attention + MLP; mlp: hidden layers "
                       f"(default {d.layers})")
    model.add_argument("--d-model", type=int_list, help=f"transformer: residual stream width (default {d.d_model})")
    model.add_argument("--heads", type=int_list, help=f"transformer: attention heads; d_model must be a multiple (default {d.heads})")
    model.add_argument("--d-mlp", type=int_list, help=f"transformer: MLP hidden width (default {d.d_mlp})")
    model.add_argument("--layernorm", action=argparse.BooleanOptionalAction, default=None,
                       help="transformer: LayerNorm before attention, MLP and unembedding (default: none)")
    model.add_argument("--transformer-style", type=name_list, help=f"transformer: {' or '.join(TRANSFORMER_STYLES)}: Nanda et "
                       "al.'s layout (tokens a, b, =); or Lee et al.'s grokfast decoder (tokens a, op, b, =, attention "
                       "biases, their LayerNorm placement, PyTorch's initialisation; needs --layernorm) "
                       f"(default {d.transformer_style})")
    model.add_argument("--epochs", type=int, help=f"epochs per run (default {d.epochs})")
    model.add_argument("--batch-size", type=int_list, help="minibatch size; 0 means full batch; larger than the smallest "
                       f"training set is refused (default {d.batch_size})")
    model.add_argument("--optimizer", type=name_list, help=f"{', '.join(OPTIMIZERS)}: adam: torch.optim.Adam with coupled L2 "
                       "weight decay; adamw: decoupled; sgd: plain SGD with L2; muon: Muon (optax) on the hidden layer's "
                       "weight matrix and AdamW on embeddings, biases and the output layer, weight decay decoupled on both "
                       f"(theta shrinks by lr*wd per step) (default {d.optimizer})")
    model.add_argument("--beta1", type=float, help=f"Adam's first-moment decay (default {d.beta1})")
    model.add_argument("--beta2", type=float, help=f"Adam's second-moment decay (default {d.beta2}; Nanda and Power use 0.98)")
    model.add_argument("--adam-eps", type=float, help=f"Adam's epsilon (default {d.adam_eps:g}, PyTorch's; Prieto et al. "
                       "use 1e-25)")
    model.add_argument("--muon-adam-lr", type=float, help="muon: the learning rate of the AdamW part (embeddings, biases, "
                       "LayerNorms, output layer), so that --lr sets Muon's matrices alone (default: --lr for both)")
    model.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up over this many optimizer steps (default 0)")
    model.add_argument("--zero-output-init", action=argparse.BooleanOptionalAction, default=None,
                       help="the output layer starts at zero, so the initial output is 0 at any --init-scale (Lyu et al.'s "
                       "large-initialisation setting) (default: off)")
    model.add_argument("--ortho-grad", action=argparse.BooleanOptionalAction, default=None,
                       help="Prieto et al.'s ⊥Grad before the optimizer (⊥AdamW, ⊥SGD): each parameter's loss gradient "
                       "without its part along the parameter, rescaled to the gradient's norm; weight decay joins after it "
                       "(default: off)")
    model.add_argument("--grokfast", type=name_list, help=f"gradient filter before the optimizer ({', '.join(GRADIENT_FILTERS)}): "
                       "grokfast's ema (g + lambda h, h <- alpha h + (1-alpha) g) or ma (g + lambda * mean of the last "
                       "--grokfast-window gradients, once there are that many); it sees the loss gradient only, weight decay "
                       f"joins after it (default {d.grokfast})")
    model.add_argument("--grokfast-window", type=int_list, help=f"ma: gradients averaged (default {d.grokfast_window})")
    grid = parser.add_argument_group(
        "grid (one run per seed x data seed x training fraction x label noise x init scale x grokfast alpha x grokfast lambda x wd x lr, "
        "all trained at once; each flag above "
        "given a comma-separated list adds a compiled program per value instead, all in one results folder)")
    grid.add_argument("--seeds", type=int, help=f"N: seeds 0..N-1 (split, init and batch order) (default {len(d.seeds)})")
    grid.add_argument("--wd", type=float_list, help=f"comma-separated weight decays (default {','.join(f'{w:g}' for w in d.wds)})")
    grid.add_argument("--lr", type=float_list, help=f"comma-separated learning rates (default {','.join(f'{v:g}' for v in d.lrs)})")
    grid.add_argument("--init-scale", type=float_list, help="comma-separated factors multiplying every initial parameter "
                      "(Omnigrok's alpha; default 1)")
    grid.add_argument("--grokfast-alpha", type=float_list, help="comma-separated EMA decays in [0, 1) for --grokfast ema "
                      f"(default {d.grokfast_alphas[0]:g})")
    grid.add_argument("--grokfast-lambda", type=float_list, help="comma-separated filter amplifications >= 0 for --grokfast "
                      f"(default {d.grokfast_lambdas[0]:g}; 0 trains as without the filter)")
    grid.add_argument("--label-noise", type=float_list, help="comma-separated fractions in [0, 1) of each run's training "
                      "labels replaced by a uniformly random wrong label, chosen by the data seed (Doshi et al.'s corrupted "
                      "labels; the test set stays clean) (default 0)")
    grid.add_argument("--data-seed", type=int_list, help="comma-separated seeds of the train/test split, a grid axis "
                      "(default: each run's seed fixes its split)")
    run = parser.add_argument_group("running")
    run.add_argument("--config", help="a TOML file of configuration keys (preset and the fields of the flags above: m, op, "
                     "model, activation, loss, hidden, train_fracs, batch_size, epochs, optimizer, grokfast, grokfast_window, "
                     "fourier_every, geometry_every, chunk_epochs, run_group, dtype, seeds, wds, lrs, data_seeds, label_noises, "
                     "init_scales, grokfast_alphas, grokfast_lambdas; lists where the "
                     "flag takes one); flags override it")
    run.add_argument("--fourier-every", type=int, help="snapshot every run's Fourier features every N epochs into "
                     "fourier.npz, with a figure; snapshots fall on chunk ends, so chunks shrink to a divisor of N "
                     f"(default {d.fourier_every}: none)")
    run.add_argument("--geometry-every", type=int, help="measure feature_diversity and the three cosine metrics every N "
                     f"epochs only, NaN between (they cost most of a sweep's time; 0: never) (default {d.geometry_every})")
    run.add_argument("--eval-every", type=int, help="measure test loss and accuracy every N epochs and at the last (NaN "
                     "between; default 1): the test set is most of an epoch's cost at small training fractions")
    run.add_argument("--chunk-epochs", type=int,
                     help=f"epochs per compiled call: progress and checkpoint granularity (default {d.chunk_epochs})")
    run.add_argument("--run-group", type=run_group_arg, help="train this many runs at a time, looping over groups inside the "
                     "compiled chunk; on a CPU a group of 16-32 keeps the work in cache for large sweeps; 'auto' times one "
                     "epoch at each of 0, 64, 32, ..., 1 first and takes the fastest (default 0: all runs at once)")
    run.add_argument("--cpu-devices", type=int, help="split the CPU into N host devices and spread the runs over them "
                     "(XLA runs a program on about one core per device); 1: one device, as JAX does by default; ignored "
                     "where there is a GPU (default: one per usable core, at most one per run, unless XLA_FLAGS sets a device count)")
    run.add_argument("--checkpoint-minutes", type=float,
                     help="save a checkpoint once this many minutes of training have passed since the last (and always "
                     "at Ctrl-C or SIGTERM); a checkpoint holds every run's parameters and optimizer state, so a large sweep on a GPU "
                     "would spend its time writing them at every chunk (default 5; --resume: the sweep's own)")
    run.add_argument("--checkpoint-every", type=int,
                     help="also save one every N chunks (default: by time alone; --resume: the sweep's own)")
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


# The flags that set configuration fields, by their own names (read as the field names:
# wd as wds, train_frac as train_fracs, ...; see grokjax.config.field_names).
CONFIG_FLAGS = ("preset", "task", "n_bits", "parity_k", "n_samples",
                "m", "op", "train_frac", "model", "activation", "loss", "logit_dtype", "hidden", "layers", "d_model",
                "heads", "d_mlp", "layernorm",
                "transformer_style", "epochs", "batch_size", "optimizer", "beta1", "beta2", "adam_eps", "muon_adam_lr",
                "warmup_steps",
                "ortho_grad", "zero_output_init",
                "grokfast",
                "grokfast_window", "seeds", "wd", "lr", "init_scale", "grokfast_alpha", "grokfast_lambda", "data_seed", "label_noise",
                "fourier_every", "geometry_every", "eval_every", "chunk_epochs", "run_group")


def given_fields(args: argparse.Namespace) -> dict:
    """The configuration fields set by flags on the command line, by their field names."""
    given = {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}
    if given.get("run_group") == "auto":  # timed once the sweep starts
        del given["run_group"]
    # a flag given one value sets the field; several make a list (a grid axis or a static axis)
    return field_names({name: list(value) if isinstance(value, tuple) else value for name, value in given.items()},
                       "the command line")


def read_saved_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise ConfigError(f"--resume {folder}: no config.json there, so nothing to resume")
    record = read_json(path)
    if not isinstance(record.get("config"), dict):
        raise DamagedFile(f"{path} lacks its 'config' object; it may have been edited")
    return record["config"]


def resolve(args: argparse.Namespace) -> tuple[SweepPlan, Path | None]:
    """The configuration and, with --resume, the folder to continue."""
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    if args.checkpoint_minutes is not None and not 0 < args.checkpoint_minutes < math.inf:
        raise ConfigError(f"--checkpoint-minutes must be a number of minutes > 0, got {args.checkpoint_minutes:g}")
    from_file = read_config_file(args.config) if args.config else {}
    if from_file:
        grid_plan(from_file, args.config)  # errors in the file name the file
    overrides = {**from_file, **given_fields(args)}
    if args.resume is None:
        return grid_plan(overrides, "the command line"), None
    folder = Path(args.resume)
    saved_record = read_saved_config(folder)
    saved = sweep_plan_from_mapping(saved_record, str(folder / "config.json"))
    differ = differing_fields(saved, grid_plan(overrides, "the command line", base=saved_record))
    if differ:
        raise ConfigError(f"--resume {folder}: its configuration differs from the one given in {', '.join(differ)}")
    if (folder / "metrics.npz").exists() and not partial_files(folder):
        raise ConfigError(f"--resume {folder}: that sweep already finished")
    return saved, folder


def join_processes(args: argparse.Namespace) -> int:
    """Connect this process to the others (jax.distributed); returns its index."""
    import jax

    jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                               process_id=args.process_id)
    return jax.process_index()


def pick_run_group(config, candidates=None):
    """The configuration with the run-group size that trains this sweep fastest here, and
    the measured milliseconds per run-epoch of each size (0: all runs at once);
    ``candidates`` default to :data:`grokjax.driver.RUN_GROUP_CANDIDATES`."""
    import dataclasses

    from grokjax.driver import RUN_GROUP_CANDIDATES, time_run_groups
    from grokjax.train import grid_hparams

    print("--run-group auto: compiling and timing one epoch at each group size", flush=True)
    timings = time_run_groups(config, grid_hparams(config), candidates or RUN_GROUP_CANDIDATES)
    best = min(timings, key=timings.get)
    measured = {group: round(1e3 * seconds, 4) for group, seconds in timings.items()}
    print("run groups, ms per run-epoch: " + ", ".join(f"{group or 'all'} {ms:.3g}" for group, ms in measured.items())
          + f"; using {best or 'all'}", flush=True)
    return dataclasses.replace(config, run_group=best), measured


def check_flag_combinations(args: argparse.Namespace) -> None:
    """Refuse flags that cannot go together, before anything is read or started."""
    if args.resume is not None and (args.out is not None or args.overwrite):
        raise ConfigError("--resume continues its own folder; it takes neither --out nor --overwrite")
    if args.distributed and (args.out is None or args.resume is not None):
        raise ConfigError("--distributed needs --out (one folder that every process names) and cannot --resume")
    if args.run_group == "auto" and (args.distributed or args.resume is not None):
        raise ConfigError("--run-group auto times a new single-process sweep; give a number with --distributed, "
                          "and --resume keeps the folder's own")


def prepare(args: argparse.Namespace) -> tuple[SweepPlan, Path, Path | None, int]:
    """Everything that can fail on bad input, before training: the plan, the devices, the
    processes and the results folder. Returns (plan, folder, folder resumed or None, process)."""
    check_flag_combinations(args)
    plan, resume_folder = resolve(args)
    if args.run_group == "auto" and len(plan.programs) > 1:
        raise ConfigError(f"--run-group auto times one program; this sweep has {len(plan.programs)} "
                          f"(over {', '.join(plan.axes)}): give a number")
    from grokjax import results
    from grokjax.devices import use_cpu_devices

    # before JAX starts, and before jax.distributed joins the processes
    use_cpu_devices(args.cpu_devices, runs=max(program.n_runs for program in plan.programs))
    process = join_processes(args) if args.distributed else 0
    out = resume_folder or (results.new_results_dir(args.out, overwrite=args.overwrite) if process == 0 else Path(args.out))
    if args.distributed:  # the other processes write into the folder that process 0 has just made
        from jax.experimental.multihost_utils import sync_global_devices

        sync_global_devices("grokjax: results folder ready")
    return plan, out, resume_folder, process


def train_until_done_or_interrupted(plan: SweepPlan, out: Path, cadence, progress: bool, distributed: bool = False):
    """Train the plan; the first Ctrl-C (SIGINT), or a SIGTERM as cluster schedulers send
    before they kill a job, finishes the current chunk and checkpoints (raising
    SweepInterrupted with the signal's number), a second signal aborts at once. A
    multi-process sweep keeps SIGTERM's default (its processes could stop at different chunks)."""
    from grokjax.driver import SweepInterrupted, train_plan

    interrupts = []

    def on_interrupt(signum, frame):
        if interrupts:  # a second signal aborts at once; the last checkpoint stays
            raise KeyboardInterrupt
        interrupts.append(signum)
        name = "interrupt" if signum == signal.SIGINT else f"{signal.Signals(signum).name} received"
        print(f"\n{name}: finishing the current chunk and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr,
              flush=True)

    handled = [signal.SIGINT] + ([] if distributed else [signal.SIGTERM])
    previous = {signum: signal.signal(signum, on_interrupt) for signum in handled}
    try:
        return train_plan(plan, out, progress=progress, cadence=cadence, stop_requested=lambda: bool(interrupts))
    except SweepInterrupted as stopped:
        stopped.signum = interrupts[0]
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def merge_processes(out: Path, process: int, trained) -> tuple[dict, dict] | None:
    """In a multi-process sweep every process writes its runs' rows; process 0 waits for all
    and returns the whole (metrics, fourier); the others return None."""
    import jax

    from grokjax import results

    rows = {**trained.metrics, **trained.fourier}
    results.write_process_shard(out, process, trained.local_runs, rows)
    if process != 0:
        return None
    merged = results.merge_process_shards(out, jax.process_count(), rows)
    return tuple({name: merged[name] for name in part} for part in (trained.metrics, trained.fourier))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        plan, out, resume_folder, process = prepare(args)
    except (ConfigError, DamagedFile, FileExistsError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")

    # Imported after validation so that a bad flag answers at once, before JAX starts.
    from grokjax import report, results
    from grokjax.config import config_hash
    from grokjax.driver import SweepInterrupted, checkpoint_record, configure_jax, snapshot_epochs

    configure_jax(plan)
    auto_record = {}  # with --run-group auto: what each size measured, kept in config.json
    if args.run_group == "auto":
        program, measured = pick_run_group(plan.programs[0])
        plan = SweepPlan((program,))
        auto_record = {"run_group_auto_ms_per_run_epoch": {str(group): ms for group, ms in measured.items()}}
    command = shlex.join(["python", "-m", "grokjax.sweep", *(sys.argv[1:] if argv is None else argv)])
    saved = read_json(out / "config.json").get("checkpoint") if resume_folder else None
    cadence = checkpoint_cadence(args, saved)
    checkpoints = {} if args.distributed else {"checkpoint": checkpoint_record(plan, cadence)}
    if resume_folder is None and process == 0:
        results.write_config(out / "config.json", plan, command, {"config_hash": config_hash(plan), **auto_record, **checkpoints})
    print(describe(plan) + (f"; resuming {out}" if resume_folder else ""), flush=True)
    if checkpoints:
        print(describe_checkpoints(checkpoints["checkpoint"]), flush=True)

    try:
        trained = train_until_done_or_interrupted(plan, out, cadence, progress=not args.quiet and process == 0,
                                                  distributed=args.distributed)
    except DamagedFile as damaged:
        print(f"{parser.prog}: error: {damaged}", file=sys.stderr)
        return 2
    except SweepInterrupted as stopped:
        print(f"stopped {stopped.program}before epoch {stopped.next_epoch + 1} of {plan.epochs}; checkpoint saved. "
              f"Continue with: python -m grokjax.sweep --resume {shlex.quote(str(out))}", file=sys.stderr)
        return 128 + stopped.signum  # as shells report a process ended by that signal: 130, 143

    metrics, fourier = trained.metrics, trained.fourier
    if args.distributed:
        merged = merge_processes(out, process, trained)
        if merged is None:
            print(f"process {process}: wrote its {trained.local_runs.sum()} runs to {out}; process 0 merges")
            return 0
        metrics, fourier = merged
    timing = {**auto_record, "config_hash": config_hash(plan), **checkpoints, **results.timing_record(plan, trained.programs)}
    if resume_folder is not None:
        timing["resumed_by"] = command
        started = read_json(out / "config.json")
        command = started["command"]
        timing.update({key: value for key, value in started.items() if key.startswith("run_group_auto")})
    analysed = report.write_results(out, plan, command, timing, trained.coordinates, metrics,
                                    (snapshot_epochs(plan.programs[0]), fourier) if fourier else None)

    print()
    print(analysed.table())
    print(f"\ncompile {timing['timing']['compile_seconds']:.1f} s, train {timing['timing']['train_seconds']:.1f} s "
          f"({timing['timing']['ms_per_run_epoch']:.1f} ms per run-epoch); results in {out}")
    return 0


def checkpoint_cadence(args: argparse.Namespace, saved: dict | None = None):
    """The flags' cadence; a flag not given takes the resumed sweep's own (``saved``), else the default."""
    from grokjax.driver import DEFAULT_CADENCE, CheckpointCadence

    saved = saved or {}
    minutes = args.checkpoint_minutes if args.checkpoint_minutes is not None else saved.get("minutes", DEFAULT_CADENCE.minutes)
    every = args.checkpoint_every if args.checkpoint_every is not None else saved.get("every_chunks")
    return CheckpointCadence(minutes=minutes, every_chunks=every)


def describe_checkpoints(record: dict) -> str:
    """The sweep's second line: what a checkpoint costs and when one is written."""
    size = record["bytes"]
    shown = next(f"{size / 2**power:.1f} {unit}" for power, unit in ((30, "GiB"), (20, "MiB"), (10, "KiB"), (0, "B"))
                 if size >= 2**power or power == 0)
    when = f"once {record['minutes']:g} min of training have passed since the last"
    if record["every_chunks"]:
        when += f" or every {record['every_chunks']} chunks"
    return f"checkpoints: {shown} each (the previous one is kept beside it), written {when} and at Ctrl-C or SIGTERM"


def describe(plan: SweepPlan) -> str:
    """The sweep's first line: its runs, its grid and the static settings of its programs."""
    first = plan.programs[0]
    grid = [f"{len(first.seeds)} seeds"]
    if first.data_seeds is not None and len(first.data_seeds) > 1:
        grid.append(f"{len(first.data_seeds)} data seeds")
    for field, label in (("train_fracs", "train fractions"), ("label_noises", "label noises"), ("init_scales", "init scales"),
                         ("grokfast_alphas", "grokfast alphas"), ("grokfast_lambdas", "grokfast lambdas")):
        if len(getattr(first, field)) > 1:
            grid.append(f"{len(getattr(first, field))} {label}")
    grid += [f"{len(first.wds)} wd", f"{len(first.lrs)} lr"]
    programs = f" in {len(plan.programs)} programs over {', '.join(plan.axes)}" if len(plan.programs) > 1 else ""

    def setting(name):
        values = list(dict.fromkeys(getattr(program, name) for program in plan.programs))
        shown = ["full" if name == "batch_size" and v == 0 else v for v in values]
        return f"{'batch' if name == 'batch_size' else name}={','.join(map(str, shown))}"

    networks = dict.fromkeys(field for program in plan.programs for field in NETWORK_FIELDS[program.model])
    task = ["n_bits", "parity_k", "n_samples"] if first.task == "parity" else ["m", "op"]
    names = [*task, "model", *networks, "batch_size", "optimizer"]
    if any(program.grokfast != "none" for program in plan.programs):
        names.append("grokfast")
    names += [name for name, default in (("logit_dtype", "auto"), ("ortho_grad", False), ("zero_output_init", False),
                                         ("muon_adam_lr", None))
              if any(getattr(program, name) != default for program in plan.programs)]
    settings = " ".join(setting(name) for name in names)
    return f"grokjax: {plan.n_runs} runs ({' x '.join(grid)}{programs}), {plan.epochs} epochs, {settings}"


if __name__ == "__main__":
    sys.exit(main())
