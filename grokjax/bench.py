"""``python -m grokjax.bench``: how fast grokjax trains the study's configuration, against
the PyTorch study loop, on this machine.

Measures, in one process: the PyTorch reference with its per-epoch metrics and the bare
PyTorch loop; grokjax with S runs spread over 1..N devices (on a CPU: host devices, one
per core by default), with every metric every epoch and with the optimizer steps alone,
so that the metrics' share shows; grouped runs and full batch; compile time apart from the
steady state; and the fraction of the device's float32 matmul peak (measured here with a
large matmul) that the model's own training FLOPs reach. Writes a Markdown table to
``results/bench/<device>.md``.

``--checkpoints`` times whole sweeps of the largest ``--runs`` instead: without checkpoints,
with one after every chunk and at the default cadence (by time), so that what writing them
costs shows.

``--transformer PRESET`` times a transformer preset instead (nanda, power, grokfast,
transformer-cpu) for 1, 4 and 8 runs by default, in chunks of whole periods of its test
evaluation and geometry metrics, and counts the FLOPs of one training gradient with XLA, computing the last
position alone (as training does) and every position.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from grokjax import metrics as M
from grokjax.cli import OneLineErrorParser, int_list
from grokjax.config import PRESETS, ConfigError, SweepConfig, sweep_plan_from_mapping
from grokjax.data import make_dataset
from grokjax.devices import use_cpu_devices
from grokjax.driver import DEFAULT_CADENCE, CheckpointCadence, checkpoint_bytes, place_runs, prepare_sweep, run_sweep, runs_mesh
from grokjax.results import cpu_model, environment, write_atomic
from grokjax.train import grid_hparams, make_model, spread_over_runs, train_epoch_steps

# The study's configuration (m 97, hidden 128, batch 128, frac 0.5, Adam lr 1e-3, wd 1e-4).
STUDY = SweepConfig(m=97, hidden=128, batch_size=128, train_fracs=(0.5,), lrs=(1e-3,), wds=(1e-4,))


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """float32 matmul throughput of the default device, from a large square product."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        result = product(a)
    result.block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def training_gflops_per_run_epoch(config: SweepConfig) -> float:
    """The model's own training FLOPs in one epoch, counted the plain way (the dense first
    layer on concatenated embeddings, backward = 2 x forward): 3 x 2 x (2h*h + h*m) per
    training example. Evaluation and metrics are not counted."""
    return 3 * 2 * (2 * config.hidden * config.hidden + config.hidden * config.m) * config.n_train / 1e9


def gradient_gflops(config: SweepConfig, last_position_only: bool = True) -> float:
    """XLA's count of the FLOPs of one training-loss gradient over the whole training set
    (``config.n_train`` examples, one run), in GFLOP, from the program before compilation
    (a GPU's compiled program hands its matrix products to libraries it does not count);
    for a transformer, with the last position alone or every position computed."""
    model = make_model(config)
    if config.model == "transformer":
        model = model.clone(last_position_only=last_position_only)
    dataset = make_dataset(config.m, config.op)
    a, b, labels = (jnp.asarray(x[: config.n_train]) for x in (dataset.a, dataset.b, dataset.label))
    params = model.init(jax.random.key(0), a[:1], b[:1])

    def loss(params):
        return jnp.mean(M.per_example_loss(config.loss, model.apply(params, a, b)[0], labels))

    cost = jax.jit(jax.grad(loss)).lower(params).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]) / 1e9


def steps_only_chunk(config: SweepConfig, epochs: int, devices: list):
    """The sweep's optimizer steps over ``epochs`` epochs without any metric, vmapped over
    the runs and spread over ``devices`` like the sweep's own chunk."""
    def steps_only(hp, dataset, run_data, params, opt_state):
        def epoch(carry, index):
            steps = train_epoch_steps(config, hp, dataset, run_data, *carry, index)
            return (steps.params, steps.opt_state), steps.loss_sum

        return jax.lax.scan(epoch, (params, opt_state), jnp.arange(epochs))

    chunk = jax.vmap(steps_only, in_axes=(0, None, 0, 0, 0))
    return jax.jit(spread_over_runs(chunk, runs_mesh(devices), (True, False, True, True, True)))


def time_grokjax(config: SweepConfig, n_runs: int, epochs: int, metrics: bool, repeats: int,
                 n_devices: int = 1) -> tuple[float, float]:
    """(compile seconds, seconds per run-epoch) for ``n_runs`` runs over the first
    ``n_devices`` devices, timing chunks of ``epochs`` epochs. ``metrics=False`` times the
    optimizer steps alone."""
    config = dataclasses.replace(config, seeds=tuple(range(n_runs)), epochs=epochs, chunk_epochs=epochs)
    devices = jax.devices()[:n_devices]
    if metrics:
        sweep = prepare_sweep(config, grid_hparams(config), devices)
        compiled, compile_seconds = sweep.chunk, sweep.compile_seconds
        args = (sweep.hparams, sweep.dataset, sweep.run_data, sweep.state, np.int32(0))
    else:
        start = time.perf_counter()
        placed = place_runs(config, grid_hparams(config), devices)
        args = (placed.hparams, placed.dataset, placed.run_data, placed.state.params, placed.state.opt_state)
        compiled = steps_only_chunk(config, epochs, devices).lower(*args).compile()
        compile_seconds = time.perf_counter() - start
    # donation consumes the state, so every call gets a fresh copy made outside the timing
    fresh = lambda: jax.tree.map(lambda x: x.copy(), args)  # noqa: E731

    def run_chunk():
        inputs = fresh()
        jax.block_until_ready(inputs)
        start_time = time.perf_counter()
        jax.block_until_ready(compiled(*inputs))
        return time.perf_counter() - start_time

    best = min(run_chunk() for _ in range(repeats + 1))
    return compile_seconds, best / (n_runs * epochs)


def time_torch(config: SweepConfig, epochs: int, metrics: bool) -> float:
    """Seconds per epoch of the PyTorch reference (one run), with or without its metrics;
    the first epoch (warm-up) is not counted."""
    from grokjax.torch_ref import study_schedule, train_reference

    stamps = []
    schedule = study_schedule(config.n_pairs, config.train_fracs[0], config.batch_size, seed=0)
    train_reference(config.m, config.op, config.hidden, epochs + 1, config.lrs[0], config.wds[0], schedule,
                    optimizer=config.optimizer, measure=metrics, on_epoch=lambda epoch, values: stamps.append(time.perf_counter()))
    return (stamps[-1] - stamps[0]) / epochs


def device_name() -> str:
    kind = jax.devices()[0].device_kind
    return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-") or jax.default_backend()


def machine_peak(peak: float, n_devices: int) -> float:
    """The matmul peak of ``n_devices`` devices: on a CPU the measured one (one host device's
    matmul already uses every core), elsewhere one device's times the count."""
    return peak if jax.default_backend() == "cpu" else peak * n_devices


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m grokjax.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=int_list, default=None,
                        help="comma-separated numbers of runs (default 8,32,128; with --transformer 1,4,8)")
    transformers = [name for name, preset in PRESETS.items() if preset.get("model") == "transformer"]
    parser.add_argument("--transformer", choices=transformers, default=None,
                        help="time this transformer preset instead of the study's network")
    parser.add_argument("--checkpoints", action="store_true",
                        help="time whole sweeps of the largest --runs (10 chunks of --epochs) without checkpoints, with one "
                        "after every chunk and at the default cadence instead")
    parser.add_argument("--devices", type=int_list, default=None,
                        help="comma-separated device counts to spread the runs over (default: 1 and all)")
    parser.add_argument("--cpu-devices", type=int, default=None, help="host devices to split a CPU into (default: one per core)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per timed grokjax chunk")
    parser.add_argument("--torch-epochs", type=int, default=3, help="epochs per timed PyTorch loop")
    parser.add_argument("--repeats", type=int, default=3, help="extra timed chunks per measurement (the best counts)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch loops")
    parser.add_argument("--m", type=int, default=STUDY.m, help="modulus (smaller: a quick check, not the study)")
    parser.add_argument("--hidden", type=int, default=STUDY.hidden, help="hidden width")
    parser.add_argument("--batch-size", type=int, default=STUDY.batch_size, help="minibatch size")
    parser.add_argument("--out", default=None, help="Markdown file (default: results/bench/<device>.md)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.transformer:
        args.runs = args.runs or (1, 4, 8)
        return bench_transformer(args, argv)
    if args.checkpoints:
        if min(args.runs or (1,)) < 1 or args.epochs < 1:
            parser.exit(2, f"{parser.prog}: error: --runs and --epochs must be >= 1\n")
        use_cpu_devices(args.cpu_devices)  # before JAX starts
        return bench_checkpoints(args, argv)
    args.runs = args.runs or (8, 32, 128)
    try:
        config = dataclasses.replace(STUDY, m=args.m, hidden=args.hidden, batch_size=args.batch_size)
        if min(args.runs) < 1 or args.epochs < 1 or args.repeats < 0:
            raise ConfigError("--runs and --epochs must be >= 1, --repeats >= 0")
        use_cpu_devices(args.cpu_devices)  # before JAX starts
        device_counts = args.devices or tuple(sorted({1, jax.device_count()}))
        if min(device_counts) < 1 or max(device_counts) > jax.device_count():
            raise ConfigError(f"--devices: this process has {jax.device_count()} device(s), asked for {device_counts}")
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    # no persistent compilation cache here: compile times are part of what is measured

    peak = matmul_peak_gflops()
    flops = training_gflops_per_run_epoch(config)
    print(f"device: {jax.devices()[0].device_kind} x {jax.device_count()} ({cpu_model()}); float32 matmul peak "
          f"{peak:.0f} GFLOP/s; model training FLOPs {flops:.2f} GFLOP per run-epoch", flush=True)
    rows = []  # (loop, devices, runs, compile seconds, seconds per run-epoch)

    def measure(label, cfg, n_runs, metrics, n_devices, epochs=args.epochs):
        compile_s, seconds = time_grokjax(cfg, n_runs, epochs, metrics, args.repeats, n_devices)
        rows.append((label, n_devices, n_runs, compile_s, seconds))
        print(f"{label}, {n_devices} device(s), {n_runs} runs: compile {compile_s:.1f} s, "
              f"{1e3 * seconds:.2f} ms per run-epoch", flush=True)

    torch_metrics = torch_bare = None
    if not args.no_torch:
        torch_metrics = time_torch(config, args.torch_epochs, metrics=True)
        torch_bare = time_torch(config, args.torch_epochs, metrics=False)
        rows.append(("PyTorch study loop, with metrics", None, 1, None, torch_metrics))
        rows.append(("PyTorch bare loop, no metrics", None, 1, None, torch_bare))
        for name, _, _, _, seconds in rows:
            print(f"{name}: {1e3 * seconds:.1f} ms per epoch", flush=True)
    for n_runs in args.runs:
        for n_devices in device_counts:
            measure("grokjax, with metrics", config, n_runs, True, n_devices)
            measure("grokjax, steps only", config, n_runs, False, n_devices)
    most = max(device_counts)
    if max(args.runs) >= 64:  # large sweeps on a CPU: vmap groups of 16 runs, looped
        measure("grokjax, with metrics, groups of 16", dataclasses.replace(config, run_group=16), max(args.runs), True, most)
    full_batch = dataclasses.replace(config, batch_size=0)
    n_full = max([n for n in args.runs if n <= 32] or [min(args.runs)])
    measure("grokjax full batch, with metrics", full_batch, n_full, True, most, 4 * args.epochs)
    measure("grokjax full batch, steps only", full_batch, n_full, False, most, 4 * args.epochs)

    steps_only = {(label, n_devices, n_runs): seconds for label, n_devices, n_runs, _, seconds in rows if "steps only" in label}
    lines = [
        *header_lines(f"# grokjax benchmark: {jax.devices()[0].device_kind}", argv),
        f"- Configuration: m {config.m}, hidden {config.hidden}, batch {config.batch_size}, train fraction "
        f"{config.train_fracs[0]}, Adam lr {config.lrs[0]:g}, wd {config.wds[0]:g}; every metric every epoch in the "
        f"'with metrics' rows; full-batch rows use all {config.n_train} training pairs per step.",
        f"- float32 matmul peak measured here: {peak:.0f} GFLOP/s (2048 x 2048 product on one device; on a CPU "
        f"that is every core). Model training FLOPs: {flops:.2f} GFLOP per run-epoch (dense count, forward + "
        "backward, evaluation not counted).",
        "- Steady state: the best of several timed chunks after compilation; compile time is separate. Metrics' "
        "share: with metrics over steps only, same devices and runs.",
        "",
        "| loop | devices | runs | compile (s) | ms per run-epoch | run-epochs per s | metrics' share "
        "| × PyTorch with metrics | × bare PyTorch | % of matmul peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n_devices, n_runs, compile_s, seconds in rows:
        def speedup(ref, seconds=seconds):
            return "" if ref is None else f"{ref / seconds:.1f}"

        bare = steps_only.get((name.replace("with metrics", "steps only").replace(", groups of 16", ""), n_devices, n_runs))
        share = f"{100 * (seconds / bare - 1):+.0f} %" if "with metrics" in name and n_devices and bare else ""
        lines.append(
            f"| {name} | {n_devices or ''} | {n_runs} | {'' if compile_s is None else f'{compile_s:.1f}'} | "
            f"{1e3 * seconds:.2f} | {1 / seconds:.1f} | {share} | {speedup(torch_metrics)} | {speedup(torch_bare)} | "
            f"{100 * flops / seconds / machine_peak(peak, n_devices or 1):.0f} |"
        )
    return write_table(Path(args.out) if args.out else Path("results") / "bench" / f"{device_name()}.md", lines, len(rows))


def header_lines(title: str, argv: list[str] | None) -> list[str]:
    """A benchmark file's title, the command that wrote it and the machine."""
    env = environment()
    return [
        title,
        "",
        "```",
        "python -m grokjax.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "```",
        "",
        f"- Device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s); CPU {cpu_model()}, "
        f"{env['usable_cores']} usable cores; jax {env['versions']['jax']}; Python {platform.python_version()}.",
    ]


def write_table(out: Path, lines: list[str], n_rows: int) -> int:
    """Write the benchmark's Markdown file and print its table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, ("\n".join(lines) + "\n").encode())
    print("\n" + "\n".join(lines[-n_rows - 2:]))
    print(f"\nwrote {out}")
    return 0


def bench_checkpoints(args, argv) -> int:
    """The ``--checkpoints`` benchmark: one sweep of the study's network with the largest of
    ``--runs`` runs, 10 chunks of ``--epochs`` epochs, trained three times: without
    checkpoints, with one after every chunk (the cadence before checkpoints went by time)
    and at the default cadence, which writes one only if the sweep trains longer than its
    interval. The checkpoints go to a temporary folder beside the table, on the disk
    results are written to."""
    n_runs = max(args.runs or (128,))
    config = dataclasses.replace(STUDY, m=args.m, hidden=args.hidden, batch_size=args.batch_size,
                                 seeds=tuple(range(n_runs)), epochs=10 * args.epochs, chunk_epochs=args.epochs)
    size = checkpoint_bytes(config)
    cadences = {"no checkpoints": None, "a checkpoint after every chunk": CheckpointCadence(every_chunks=1),
                f"the default cadence (every {DEFAULT_CADENCE.minutes:g} min)": DEFAULT_CADENCE}
    rows = []
    out = Path(args.out) if args.out else Path("results") / "bench" / f"{device_name()}-checkpoints.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as folder:  # on the disk results go to, not a RAM-backed /tmp
        for label, cadence in cadences.items():
            sweep = run_sweep(config, checkpoint=None if cadence is None else Path(folder) / "checkpoint.npz",
                              cadence=cadence or DEFAULT_CADENCE)
            for stale in Path(folder).iterdir():
                stale.unlink()
            seconds = sweep.train_seconds / (n_runs * config.epochs)
            rows.append((label, sweep.checkpoints_written, sweep.train_seconds, seconds))
            print(f"{label}: {sweep.checkpoints_written} checkpoints, training {sweep.train_seconds:.1f} s, "
                  f"{1e3 * seconds:.2f} ms per run-epoch", flush=True)
    none = rows[0][3]
    lines = [
        *header_lines(f"# grokjax benchmark, checkpoints: {jax.devices()[0].device_kind}", argv),
        f"- Configuration: the study's network (m {config.m}, hidden {config.hidden}, batch {config.batch_size}), "
        f"{n_runs} runs, {config.epochs} epochs in chunks of {config.chunk_epochs}, every metric every epoch, on every "
        f"device; one checkpoint holds {size / 2**20:.0f} MiB (every run's parameters, Adam moments and the metric "
        "history). Training time alone (compile apart), one sweep each.",
        "",
        "| checkpoints | written | training (s) | ms per run-epoch | over no checkpoints |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, n_written, train_s, seconds in rows:
        lines.append(f"| {label} | {n_written} | {train_s:.1f} | {1e3 * seconds:.2f} | {100 * (seconds / none - 1):+.0f} % |")
    return write_table(out, lines, len(rows))


def bench_transformer(args, argv) -> int:
    """The ``--transformer`` benchmark: ms per run-epoch of the preset for each number of runs
    on one device, with its metrics (chunks of whole periods of its test evaluation and
    geometry metrics) and steps only; FLOPs of the last-position and the full computation."""
    config = sweep_plan_from_mapping({"preset": args.transformer}, "--transformer").programs[0]
    # whole periods of the preset's test evaluation and geometry metrics, so each costs its share
    epochs = max(args.epochs, math.lcm(config.eval_every, config.geometry_every or 1))
    last, full = gradient_gflops(config), gradient_gflops(config, last_position_only=False)
    peak = matmul_peak_gflops()
    print(f"device: {jax.devices()[0].device_kind} ({cpu_model()}); float32 matmul peak {peak:.0f} GFLOP/s; one "
          f"training gradient: {last:.2f} GFLOP computing the last position alone, {full:.2f} computing every "
          f"position ({full / last:.2f}x)", flush=True)
    rows = []
    for n_runs in args.runs:
        for metrics in (True, False):
            compile_s, seconds = time_grokjax(config, n_runs, epochs, metrics, args.repeats)
            rows.append((n_runs, metrics, compile_s, seconds))
            print(f"{n_runs} runs, {'with metrics' if metrics else 'steps only'}: compile {compile_s:.1f} s, "
                  f"{1e3 * seconds:.2f} ms per run-epoch", flush=True)
    steps = config.steps_per_epoch
    lines = [
        *header_lines(f"# grokjax benchmark, transformer preset {args.transformer}: {jax.devices()[0].device_kind}", argv),
        f"- Configuration: the {args.transformer} preset (m {config.m} {config.op}, {config.layers} layer(s), d_model "
        f"{config.d_model}, {config.heads} heads, d_mlp {config.d_mlp}, {config.n_train} training pairs, {steps} "
        f"step(s) per epoch, {config.optimizer}); 'with metrics' rows time chunks of {epochs} epochs, which measure "
        f"the test set every {config.eval_every} and the geometry metrics every {config.geometry_every} epochs, as "
        "the preset does (its progress-measure snapshots are not timed).",
        f"- One training gradient over the training set, counted by XLA: {last:.2f} GFLOP computing the last position "
        f"alone (what grokjax trains), {full:.2f} GFLOP computing every position ({full / last:.2f}x). float32 "
        f"matmul peak measured here: {peak:.0f} GFLOP/s.",
        "",
        "| runs | loop | compile (s) | ms per run-epoch | run-epochs per s | % of matmul peak (gradients) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n_runs, metrics, compile_s, seconds in rows:
        lines.append(f"| {n_runs} | {'with metrics' if metrics else 'steps only'} | {compile_s:.1f} | {1e3 * seconds:.2f} | "
                     f"{1 / seconds:.1f} | {100 * last * steps / seconds / peak:.0f} |")
    out = Path(args.out) if args.out else Path("results") / "bench" / f"{device_name()}-{args.transformer}.md"
    return write_table(out, lines, len(rows))


if __name__ == "__main__":
    sys.exit(main())
