"""``python -m grokjax.bench``: how fast grokjax trains the study's configuration, against
the PyTorch study loop, on this machine.

Measures, in one process and on one device: the PyTorch reference with its per-epoch
metrics and the bare PyTorch loop; grokjax with S runs vmapped, with and without
metrics, minibatch and full batch; compile time apart from the steady state; and the
fraction of the device's float32 matmul peak (measured here with a large matmul) that
the model's own training FLOPs reach. Writes a Markdown table to
``results/bench/<device>.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import re
import sys
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.config import OneLineErrorParser, SweepConfig
from grokjax.data import Dataset, make_dataset
from grokjax.results import cpu_model, environment, write_atomic
from grokjax.train import grid_hparams, init_run, make_train, train_epoch_steps

# The study's configuration (BACKGROUND: m 97, hidden 128, batch 128, frac 0.5, Adam lr 1e-3, wd 1e-4).
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


def time_grokjax(config: SweepConfig, n_runs: int, epochs: int, metrics: bool, repeats: int) -> tuple[float, float]:
    """(compile seconds, seconds per run-epoch) for ``n_runs`` vmapped runs, timing chunks of
    ``epochs`` epochs. ``metrics=False`` times the optimizer steps alone."""
    config = dataclasses.replace(config, seeds=tuple(range(n_runs)), epochs=epochs, chunk_epochs=epochs)
    hparams = grid_hparams(config)
    dataset = Dataset(*(jnp.asarray(x) for x in make_dataset(config.m, config.op)))
    run_data, state = jax.jit(jax.vmap(partial(init_run, config)))(hparams)
    if metrics:
        chunk = make_train(config).train_chunk
        args = (hparams, dataset, run_data, state, np.int32(0))
    else:
        def steps_only(hp, dataset, run_data, params, opt_state):
            def epoch(carry, index):
                steps = train_epoch_steps(config, hp, dataset, run_data, *carry, index)
                return (steps.params, steps.opt_state), steps.loss_sum

            return jax.lax.scan(epoch, (params, opt_state), jnp.arange(epochs))

        chunk = jax.jit(jax.vmap(steps_only, in_axes=(0, None, 0, 0, 0)))
        args = (hparams, dataset, run_data, state.params, state.opt_state)
    start = time.perf_counter()
    compiled = chunk.lower(*args).compile()
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


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m grokjax.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", default="1,8,32,128", help="comma-separated numbers of vmapped runs")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per timed grokjax chunk")
    parser.add_argument("--torch-epochs", type=int, default=3, help="epochs per timed PyTorch loop")
    parser.add_argument("--repeats", type=int, default=2, help="timed chunks per measurement (the best counts)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch loops")
    parser.add_argument("--out", default=None, help="Markdown file (default: results/bench/<device>.md)")
    args = parser.parse_args(argv)
    try:
        run_counts = [int(x) for x in args.runs.split(",")]
    except ValueError:
        parser.error(f"--runs expects comma-separated integers, got {args.runs!r}")
    # no persistent compilation cache here: compile times are part of what is measured

    peak = matmul_peak_gflops()
    flops = training_gflops_per_run_epoch(STUDY)
    print(f"device: {jax.devices()[0].device_kind} ({cpu_model()}); float32 matmul peak {peak:.0f} GFLOP/s; "
          f"model training FLOPs {flops:.2f} GFLOP per run-epoch", flush=True)
    rows = []
    torch_metrics = torch_bare = None
    if not args.no_torch:
        torch_metrics = time_torch(STUDY, args.torch_epochs, metrics=True)
        torch_bare = time_torch(STUDY, args.torch_epochs, metrics=False)
        rows.append(("PyTorch study loop, with metrics", 1, None, torch_metrics))
        rows.append(("PyTorch bare loop, no metrics", 1, None, torch_bare))
        for name, _, _, seconds in rows:
            print(f"{name}: {1e3 * seconds:.1f} ms per epoch", flush=True)
    for n_runs in run_counts:
        for label, config, metrics in (("grokjax, with metrics", STUDY, True), ("grokjax, steps only", STUDY, False)):
            compile_s, seconds = time_grokjax(config, n_runs, args.epochs, metrics, args.repeats)
            rows.append((label, n_runs, compile_s, seconds))
            print(f"{label}, {n_runs} runs: compile {compile_s:.1f} s, {1e3 * seconds:.2f} ms per run-epoch", flush=True)
    largest = max(run_counts)
    if largest >= 64:  # large sweeps on a CPU: vmap groups of 16 runs, looped
        grouped = dataclasses.replace(STUDY, run_group=16)
        compile_s, seconds = time_grokjax(grouped, largest, args.epochs, True, args.repeats)
        rows.append(("grokjax, with metrics, groups of 16", largest, compile_s, seconds))
        print(f"grokjax, with metrics, groups of 16, {largest} runs: compile {compile_s:.1f} s, {1e3 * seconds:.2f} ms per run-epoch", flush=True)
    full_batch = dataclasses.replace(STUDY, batch_size=0)
    n_full = max(n for n in run_counts if n <= 32) if any(n <= 32 for n in run_counts) else run_counts[0]
    for label, metrics in (("grokjax full batch, with metrics", True), ("grokjax full batch, steps only", False)):
        compile_s, seconds = time_grokjax(full_batch, n_full, 4 * args.epochs, metrics, args.repeats)
        rows.append((label, n_full, compile_s, seconds))
        print(f"{label}, {n_full} runs: compile {compile_s:.1f} s, {1e3 * seconds:.2f} ms per run-epoch", flush=True)

    lines = [
        f"# grokjax benchmark: {jax.devices()[0].device_kind}",
        "",
        "```",
        "python -m grokjax.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "```",
        "",
        f"- Device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s); CPU {cpu_model()}, "
        f"{environment()['cpu_count']} cores; jax {environment()['versions']['jax']}; Python {platform.python_version()}.",
        f"- Configuration: the study's (m {STUDY.m}, hidden {STUDY.hidden}, batch {STUDY.batch_size}, train fraction "
        f"{STUDY.train_fracs[0]}, Adam lr {STUDY.lrs[0]:g}, wd {STUDY.wds[0]:g}); full-batch rows use all {STUDY.n_train} training pairs per step.",
        f"- float32 matmul peak measured here: {peak:.0f} GFLOP/s (2048 x 2048 product). Model training FLOPs: "
        f"{flops:.2f} GFLOP per run-epoch (dense count, forward + backward, evaluation not counted).",
        "- Steady state: the best of several timed chunks after compilation; compile time is separate.",
        "",
        "| loop | runs | compile (s) | ms per run-epoch | run-epochs per s | × PyTorch with metrics | × bare PyTorch | % of matmul peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n_runs, compile_s, seconds in rows:
        speedup = lambda ref: "" if ref is None else f"{ref / seconds:.1f}"  # noqa: E731
        lines.append(
            f"| {name} | {n_runs} | {'' if compile_s is None else f'{compile_s:.1f}'} | {1e3 * seconds:.2f} | "
            f"{1 / seconds:.1f} | {speedup(torch_metrics)} | {speedup(torch_bare)} | {100 * flops / seconds / peak:.0f} |"
        )
    out = Path(args.out) if args.out else Path("results") / "bench" / f"{device_name()}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, ("\n".join(lines) + "\n").encode())
    print("\n" + "\n".join(lines[-len(rows) - 2:]))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
