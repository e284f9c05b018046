"""``python -m grokjax.crosscheck``: measure how closely grokjax reproduces the PyTorch study.

* ``parity``: one configuration, identical start (grokjax's initial parameters copied into
  PyTorch), split and minibatch order; both trained side by side; the largest relative
  deviation of every per-epoch metric. Exit status 1 when a float64 case fails its bound.
* ``seeds``: N independent seeds in each framework; grokking epochs, final W1 norms and
  final test accuracies compared with a permutation test.
* ``history FILE.json``: the study's own saved histories against a grokjax seed band.
* ``transformer``: the transformer (``--model transformer``) against a PyTorch
  transcription, or TransformerLens's HookedTransformer (``--reference transformer-lens``):
  same initial parameters and split; logits, full-batch AdamW losses step by step and the
  final parameters in float64. Exit status 1 beyond the bound.

Needs the optional ``torch`` extra.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

from grokjax.cli import OneLineErrorParser, int_list
from grokjax.export import STUDY_KEYS

# float64 decides: the two implementations must agree to round-off over >= 200 steps.
FLOAT64_BOUND = 1e-9
FLOAT64_MIN_STEPS = 200
# float32 is reported, not decisive: a ReLU pre-activation within float32 round-off of zero
# may switch on one side only, which moves that step's gradient by about one example's
# share, 1/n of n examples per step; so float32 is held to 1/n over its first 10 steps.
FLOAT32_STEPS = 10


def float32_bound(examples_per_step: int) -> float:
    """The float32 bound: one example's share of a step's gradient (see above)."""
    return 1.0 / examples_per_step


def relative_deviation(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|ours - reference| / max(|ours|, |reference|) per epoch (0 where both are 0)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    scale = np.maximum(np.abs(ours), np.abs(reference))
    return np.where(scale > 0, np.abs(ours - reference) / np.where(scale > 0, scale, 1.0), 0.0)


def jitted_init_run(config, hp):
    """:func:`grokjax.train.init_run` compiled once (op by op, it compiles every operation)."""
    import jax

    from grokjax.train import init_run

    return jax.jit(init_run, static_argnums=0)(config, hp)


def grokjax_schedule(config, hp):
    """The split, batch order and feature batches grokjax uses for run ``hp``, as a
    :class:`~grokjax.torch_ref.Schedule` for the PyTorch reference."""
    from grokjax.data import batch_schedule, random_subset
    from grokjax.torch_ref import Schedule
    from grokjax.train import epoch_keys

    run_data, _ = jitted_init_run(config, hp)

    def epoch_batches(epoch):
        positions, weights = map(np.asarray, batch_schedule(epoch_keys(hp, epoch)[0], config.n_train, config.effective_batch))
        return [p[w > 0] for p, w in zip(positions, weights)]

    def probe_batch(epoch):
        return np.asarray(random_subset(epoch_keys(hp, epoch)[1], config.n_train, config.effective_batch))

    return Schedule(np.asarray(run_data.train_pairs), np.asarray(run_data.test_pairs), epoch_batches, probe_batch)


def parity(config, torch_optimizer: str | None = None) -> dict[str, np.ndarray]:
    """Train the single run of ``config`` in grokjax and in the PyTorch reference from the
    same start, split and batch order; return the relative deviation per metric and epoch.
    ``torch_optimizer`` overrides the reference's optimizer (to show a mismatch is caught)."""
    import torch

    from grokjax.driver import run_sweep
    from grokjax.torch_ref import train_reference
    from grokjax.train import Hparams, grid_hparams

    hparams = grid_hparams(config)
    hp = Hparams(*(np.asarray(x)[0] for x in hparams))
    _, initial = jitted_init_run(config, hp)
    ours = run_sweep(config, hparams)
    reference = train_reference(
        config.m, config.op, config.hidden, config.epochs, float(hp.lr), float(hp.wd),
        grokjax_schedule(config, hp), optimizer=torch_optimizer or config.optimizer,
        init_params=initial.params, dtype=torch.float64 if config.dtype == "float64" else torch.float32,
    )
    return {name: relative_deviation(ours.metrics[name][0], reference[key]) for key, name in STUDY_KEYS.items()}


def run_parity(args) -> int:
    """Every (optimizer, batch size) case in float64 and float32; exit status 1 when a float64
    case exceeds its bound (float32 beyond its round-off bound is reported, not failed).
    float64 is enabled for this call only (the float32 runs name their dtype)."""
    import jax

    with jax.enable_x64(True):
        return parity_cases(args)


def parity_cases(args) -> int:
    """:func:`run_parity`'s cases, run with float64 enabled."""
    from grokjax.config import SweepConfig

    failures, float32_beyond = 0, 0
    print(f"parity: m={args.m} hidden={args.hidden} lr={args.lr} wd={args.wd} seed={args.seed}\n"
          f"  float64 decides: <= {FLOAT64_BOUND:g} over >= {FLOAT64_MIN_STEPS} steps (exit status 1 beyond it)\n"
          f"  float32 is reported: <= 1/n over the first {FLOAT32_STEPS} steps, n the examples per step (a ReLU "
          "within float32 round-off of 0 that switches on one side only moves a step's gradient by about 1/n)")
    for optimizer, batch_size in itertools.product(args.optimizers.split(","), args.batch_sizes):
        for dtype in ("float64", "float32"):
            base = SweepConfig(m=args.m, hidden=args.hidden, batch_size=batch_size, optimizer=optimizer,
                               seeds=(args.seed,), wds=(args.wd,), lrs=(args.lr,), dtype=dtype)
            bound = FLOAT64_BOUND if dtype == "float64" else float32_bound(base.effective_batch)
            steps = FLOAT64_MIN_STEPS if dtype == "float64" else FLOAT32_STEPS
            epochs = -(-steps // base.steps_per_epoch)
            config = SweepConfig(**{**base.to_dict(), "epochs": epochs, "chunk_epochs": epochs})
            deviations = parity(config, args.torch_optimizer)
            largest = {name: float(values.max()) for name, values in deviations.items()}
            worst = max(largest, key=largest.get)
            ok = largest[worst] <= bound
            if dtype == "float64":
                failures += not ok
            else:
                float32_beyond += not ok
            verdict = "PASS" if ok else ("FAIL" if dtype == "float64" else "beyond the round-off bound")
            print(f"\n{optimizer:5s} batch {batch_size or 'full':>4} {dtype}: {epochs} epochs = {epochs * base.steps_per_epoch} steps; "
                  f"largest deviation {largest[worst]:.2e} ({worst}), bound {bound:.1e}: {verdict}")
            for name, values in deviations.items():
                beyond = np.flatnonzero(values > bound)
                note = f"  (above the bound from epoch {beyond[0] + 1}: {' '.join(f'{v:.1e}' for v in values)})" if len(beyond) else ""
                print(f"    {name:20s} {largest[name]:.2e}{note}")
    print(f"\n{'every float64 case agrees' if not failures else f'{failures} float64 case(s) failed'}"
          + (f"; {float32_beyond} float32 case(s) beyond the round-off bound" if float32_beyond else "; float32 within round-off"))
    return 1 if failures else 0


def mann_whitney_permutation(x: np.ndarray, y: np.ndarray, samples: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Mann–Whitney U of x against y (ties count half; inf is allowed, e.g. "never grokked")
    and its two-sided p-value from the permutation distribution: exact enumeration when
    there are at most 20000 splits, else ``samples`` random ones."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    pooled = np.concatenate([x, y])
    n = len(x)
    ordered = np.sort(pooled)
    # 1-based ranks, ties sharing their average rank; U of a group = its rank sum - n(n+1)/2
    ranks = (np.searchsorted(ordered, pooled, "left") + np.searchsorted(ordered, pooled, "right") + 1) / 2
    if math.comb(len(pooled), n) <= samples:
        splits = np.array(list(itertools.combinations(range(len(pooled)), n)))
    else:
        rng = np.random.default_rng(seed)
        splits = np.argsort(rng.random((samples, len(pooled))), axis=1)[:, :n]
    null = ranks[splits].sum(axis=1) - n * (n + 1) / 2
    observed = ranks[:n].sum() - n * (n + 1) / 2
    centre = n * len(y) / 2
    p = float(np.mean(np.abs(null - centre) >= abs(observed - centre) - 1e-9))
    return float(observed), p


def torch_seed_runs(config, progress: bool = True) -> dict[str, dict]:
    """Train every seed of ``config`` (one wd, one lr) in the PyTorch reference with the
    study's own randomness; histories keyed like the study's combined file."""
    from tqdm.auto import tqdm

    from grokjax.torch_ref import study_schedule, train_reference

    (wd,), (lr,) = config.wds, config.lrs
    histories = {}
    with tqdm(total=len(config.seeds) * config.epochs, unit="epoch", disable=not progress, desc="PyTorch") as bar:
        for seed in config.seeds:
            schedule = study_schedule(config.n_pairs, config.train_fracs[0], config.batch_size, seed)
            histories[f"seed{seed}"] = train_reference(
                config.m, config.op, config.hidden, config.epochs, lr, wd, schedule,
                optimizer=config.optimizer, on_epoch=lambda epoch, values: bar.update(1),
            )
    return histories


def compare_samples(ours: np.ndarray, reference: np.ndarray) -> dict:
    """Medians, ranges and a Mann–Whitney permutation test of two per-seed samples
    (NaN, e.g. never grokked, ranks above everything)."""
    as_ranked = [np.where(np.isnan(v), np.inf, v) for v in (ours, reference)]
    u, p = mann_whitney_permutation(*as_ranked)

    def describe(values):
        reached = values[~np.isnan(values)]
        return {"median": float(np.median(reached)) if len(reached) else None,
                "min": float(reached.min()) if len(reached) else None,
                "max": float(reached.max()) if len(reached) else None,
                "reached": int(len(reached)), "n": int(len(values)), "values": [None if np.isnan(v) else float(v) for v in values]}

    return {"grokjax": describe(ours), "pytorch": describe(reference), "mann_whitney_u": u, "p_value": p}


def run_seeds(args) -> int:
    from grokjax import analysis, plots
    from grokjax.config import SweepConfig
    from grokjax.driver import run_sweep
    from grokjax.results import (
        environment,
        new_results_dir,
        save_figure,
        write_atomic,
        write_metrics,
    )

    config = SweepConfig(m=args.m, hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
                         seeds=tuple(range(args.seeds)), wds=(args.wd,), lrs=(args.lr,))
    out = new_results_dir(args.out, prefix="crosscheck-seeds")
    print(f"seeds: {args.seeds} seeds in each framework, m={config.m} hidden={config.hidden} lr={args.lr} wd={args.wd}, "
          f"{config.epochs} epochs", flush=True)
    ours = run_sweep(config, progress=not args.quiet)
    histories = torch_seed_runs(config, progress=not args.quiet)
    theirs = {name: np.array([h[key] for h in histories.values()]) for key, name in STUDY_KEYS.items()}

    quantities = {
        "grok_epoch": (analysis.grok_epoch(ours.metrics["test_acc"]), analysis.grok_epoch(theirs["test_acc"])),
        "final_w1_norm": (ours.metrics["w1_norm"][:, -1], theirs["w1_norm"][:, -1]),
        "final_test_acc": (ours.metrics["test_acc"][:, -1], theirs["test_acc"][:, -1]),
    }
    comparison = {name: compare_samples(*map(np.asarray, pair)) for name, pair in quantities.items()}
    consistent = all(c["p_value"] >= args.alpha for c in comparison.values())
    verdict = "consistent" if consistent else "differs"

    print(f"\n{'quantity':16s} {'grokjax median (min-max)':>28s} {'PyTorch median (min-max)':>28s} {'reached':>9s} {'U':>6s} {'p':>7s}")
    for name, c in comparison.items():
        cells = [f"{d['median']:.4g} ({d['min']:.4g}-{d['max']:.4g})" if d["median"] is not None else "never"
                 for d in (c["grokjax"], c["pytorch"])]
        reached = f"{c['grokjax']['reached']}/{c['pytorch']['reached']}"
        print(f"{name:16s} {cells[0]:>28s} {cells[1]:>28s} {reached:>9s} {c['mann_whitney_u']:6.1f} {c['p_value']:7.3f}")
    print(f"\nverdict: {verdict} (two-sided Mann–Whitney permutation tests at level {args.alpha}; "
          f"with {args.seeds} seeds per side only large differences can be detected)")

    record = {"config": config.to_dict(), "alpha": args.alpha, "verdict": verdict, "comparison": comparison,
              "pytorch_elapsed_seconds": [h["elapsed"] for h in histories.values()],
              "grokjax_seconds": {"compile": ours.compile_seconds, "train": ours.train_seconds},
              "environment": environment()}
    write_atomic(out / "seeds.json", (json.dumps(record, indent=2) + "\n").encode())
    write_metrics(out / "metrics.npz", ours.hparams._asdict(), ours.metrics)
    key = f"m{config.m}_hd{config.hidden}_lr{args.lr}_wd{args.wd}"
    combined = {"hist": {f"{key}_{seed}": h for seed, h in histories.items()},
                "grok_pt": {f"{key}_{seed}": (None if np.isnan(g) else int(g) - 1)
                            for seed, g in zip(histories, quantities["grok_epoch"][1])}}
    write_atomic(out / "pytorch_histories.json", json.dumps(combined).encode())
    title = f"m={config.m} hidden {config.hidden}, lr {args.lr:g}, wd {args.wd:g}: {args.seeds} seeds per framework"
    save_figure(plots.framework_curves({"grokjax": ours.metrics, "PyTorch": theirs}, ("test_acc", "train_acc", "w1_norm"), title),
                out / "seeds.png")
    print(f"results in {out}")
    return 0


# The study's run key, e.g. m97_hd128_lr0.001_wd0.0001 (in file names and combined-file keys)
KEY_PATTERN = re.compile(r"m(\d+)_hd(\d+)_lr([0-9.eE+-]+?)_wd([0-9.eE+-]+?)(?=_|\.json$|$)")


class StudyRun(NamedTuple):
    key: str
    m: int
    hidden: int
    lr: float
    wd: float
    history: dict[str, np.ndarray]  # grokjax metric name -> [epochs]
    grok_point: float  # the file's own grok point, else the study's rule on its test_acc; NaN: never


def parse_key(key: str, where: str) -> tuple[int, int, float, float]:
    match = KEY_PATTERN.search(key)
    if match is None:
        raise ValueError(f"{where}: cannot read the configuration from {key!r}; expected a key like "
                         "m97_hd128_lr0.001_wd0.0001 (or a file named grok_mod_full_m97_hd128_lr0.001_wd0.0001_hist.json)")
    m, hidden, lr, wd = match.groups()
    try:
        return int(m), int(hidden), float(lr), float(wd)
    except ValueError:
        raise ValueError(f"{where}: cannot read the numbers in {key!r}") from None


def parse_history(raw, where: str) -> dict[str, np.ndarray]:
    """The study's per-run history (optionally wrapped in {"history": ...}) as grokjax-named arrays."""
    if isinstance(raw, dict) and isinstance(raw.get("history"), dict):
        raw = raw["history"]
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a history must be a JSON object of metric lists, got {type(raw).__name__}")
    if "test_acc" not in raw:
        raise ValueError(f"{where}: the history has no 'test_acc' (keys found: {', '.join(sorted(raw)) or 'none'})")
    history = {}
    for key, name in STUDY_KEYS.items():
        if key not in raw:
            continue
        values = raw[key]
        if not isinstance(values, list) or not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{where}: '{key}' must be a non-empty list of numbers")
        history[name] = np.asarray(values, float)
    lengths = {name: len(v) for name, v in history.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{where}: the metric lists differ in length: {lengths}")
    return history


def read_study_histories(path: Path) -> list[StudyRun]:
    """Histories from the study's result files: one run's ``*_hist.json`` (configuration from
    its name) or the combined file with ``hist`` (and optionally ``grok_pt``) keyed by run."""
    from grokjax.analysis import grok_epoch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object (a run's history, or one with 'hist'), got {type(data).__name__}")
    if "hist" in data:
        if not isinstance(data["hist"], dict) or not data["hist"]:
            raise ValueError(f"{path}: 'hist' must be a non-empty object mapping run keys to histories")
        entries = data["hist"].items()
        grok_points = data.get("grok_pt") if isinstance(data.get("grok_pt"), dict) else {}
    else:  # one run's file, named after its run
        match = KEY_PATTERN.search(path.name)
        entries = [(match.group(0) if match else path.name, data)]
        grok_points = {}
    runs = []
    for key, raw in entries:
        where = f"{path} [{key}]" if "hist" in data else str(path)
        m, hidden, lr, wd = parse_key(key, where)
        history = parse_history(raw, where)
        point = grok_points.get(key)  # the study's 0-based index of the grokking epoch
        has_point = isinstance(point, (int, float)) and not isinstance(point, bool)
        point = point + 1 if has_point else grok_epoch(history["test_acc"][None])[0]
        runs.append(StudyRun(key, m, hidden, lr, wd, history, float(point)))
    return runs


def percentile_of(value: float, sample: np.ndarray) -> float:
    """Share of ``sample`` below ``value`` plus half the ties, in percent (NaN = never = +inf)."""
    value = np.inf if np.isnan(value) else value
    sample = np.where(np.isnan(sample), np.inf, sample)
    return float(100 * (np.mean(sample < value) + 0.5 * np.mean(sample == value)))


def file_runs_hparams(config, members: list[StudyRun]):
    """grokjax's runs for a file's runs: every seed of ``config`` for each member's (wd, lr),
    member fastest; each seed's split, initialisation and batch order as in a sweep."""
    from grokjax.train import chosen_runs_hparams

    rows = [(seed, run.wd, run.lr) for seed in config.seeds for run in members]
    seed, wd, lr = zip(*rows)
    return chosen_runs_hparams(config, seed, wd, lr, np.full(len(rows), config.n_train))


def run_history(args) -> int:
    from grokjax import analysis, plots
    from grokjax.config import SweepConfig
    from grokjax.driver import run_sweep
    from grokjax.results import new_results_dir, save_figure, write_atomic, write_csv

    runs = read_study_histories(Path(args.file))
    out = new_results_dir(args.out, prefix="crosscheck-history")
    groups: dict[tuple, list[StudyRun]] = {}
    for run in runs:
        groups.setdefault((run.m, run.hidden, len(run.history["test_acc"])), []).append(run)
    rows = {k: [] for k in ("key", "pytorch_grok_epoch", "grokjax_grok_median", "grokjax_grok_min", "grokjax_grok_max",
                            "grokjax_grokked", "pytorch_grok_percentile", "pytorch_final_test_acc", "grokjax_final_test_acc_median")}
    for (m, hidden, epochs), members in groups.items():
        config = SweepConfig(m=m, hidden=hidden, epochs=epochs, op=args.op, batch_size=args.batch_size,
                             train_fracs=(args.train_frac,), seeds=tuple(range(args.seeds)),
                             wds=tuple(sorted({r.wd for r in members})), lrs=tuple(sorted({r.lr for r in members})))
        hparams = file_runs_hparams(config, members)  # the file's (wd, lr) pairs only, not their cartesian product
        print(f"grokjax: m={m} hidden={hidden}, {epochs} epochs, {len(hparams.seed)} runs", flush=True)
        sweep = run_sweep(config, hparams, progress=not args.quiet)
        grok = analysis.grok_epoch(sweep.metrics["test_acc"])
        for index, run in enumerate(members):
            mine = np.arange(len(hparams.seed)) % len(members) == index
            ours = {name: values[mine] for name, values in sweep.metrics.items()}
            names = tuple(name for name in run.history if name in ours)
            title = f"{run.key}: the PyTorch run against {mine.sum()} grokjax seeds"
            save_figure(plots.framework_curves({"grokjax": ours, "PyTorch": {n: run.history[n][None] for n in names}}, names, title),
                        out / f"history_{run.key}.png")
            reached = grok[mine][~np.isnan(grok[mine])]
            rows["key"].append(run.key)
            rows["pytorch_grok_epoch"].append(run.grok_point)
            rows["grokjax_grok_median"].append(float(np.median(reached)) if len(reached) else np.nan)
            rows["grokjax_grok_min"].append(float(reached.min()) if len(reached) else np.nan)
            rows["grokjax_grok_max"].append(float(reached.max()) if len(reached) else np.nan)
            rows["grokjax_grokked"].append(f"{len(reached)}/{mine.sum()}")
            rows["pytorch_grok_percentile"].append(percentile_of(run.grok_point, grok[mine]))
            rows["pytorch_final_test_acc"].append(float(run.history["test_acc"][-1]))
            rows["grokjax_final_test_acc_median"].append(float(np.median(ours["test_acc"][:, -1])))
    write_csv(out / "history.csv", rows)

    def epoch(v):
        return "never" if np.isnan(v) else f"{v:.0f}"

    print(f"\n{'run':32s} {'PyTorch grok':>12s} {'grokjax grok: median (min-max)':>31s} {'grokked':>8s} {'PyTorch percentile':>19s}")
    for i, key in enumerate(rows["key"]):
        span = (f"{epoch(rows['grokjax_grok_median'][i])} ({epoch(rows['grokjax_grok_min'][i])}-{epoch(rows['grokjax_grok_max'][i])})"
                if not np.isnan(rows["grokjax_grok_median"][i]) else "never")
        print(f"{key:32s} {epoch(rows['pytorch_grok_epoch'][i]):>12s} {span:>31s} {rows['grokjax_grokked'][i]:>8s} "
              f"{rows['pytorch_grok_percentile'][i]:>18.0f}%")
    print("\npercentile: share of grokjax seeds that grokked before the PyTorch run (never counts as last)")
    write_atomic(out / "history.json", (json.dumps({"file": str(args.file), "seeds": args.seeds}, indent=2) + "\n").encode())
    print(f"results in {out}")
    return 0


def scaled_deviation(ours, reference) -> float:
    """max |ours - reference| / max |reference|: a deviation on the array's own scale."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(ours - reference).max() / max(np.abs(reference).max(), np.finfo(np.float64).tiny))


def run_transformer(args) -> int:
    """One transformer run in grokjax and in the PyTorch reference, float64, from grokjax's
    initial parameters and split: the largest deviation of the initial logits, of the
    per-step training loss and test loss, and of the final parameters. float64 holds inside
    this call only, so that a process (the tests) can go on in float32."""
    import jax

    with jax.enable_x64(True):
        return transformer_parity(args)


def transformer_parity(args) -> int:
    """:func:`run_transformer`'s comparison, run with float64 enabled."""
    import jax
    import torch

    from grokjax.config import SweepConfig
    from grokjax.data import make_dataset
    from grokjax.driver import run_sweep
    from grokjax.torch_ref import HookedLastPosition, Transformer, load_flax_transformer, train_transformer_reference
    from grokjax.train import Hparams, grid_hparams, make_model

    config = SweepConfig(model="transformer", m=args.m, train_fracs=(args.train_frac,), batch_size=0, optimizer="adamw",
                         lrs=(args.lr,), wds=(args.wd,), beta1=args.betas[0], beta2=args.betas[1], layers=args.layers,
                         d_model=args.d_model, heads=args.heads, d_mlp=args.d_mlp, layernorm=args.layernorm,
                         warmup_steps=args.warmup_steps, seeds=(args.seed,), epochs=args.steps, chunk_epochs=args.steps,
                         geometry_every=0, dtype="float64")
    hparams = grid_hparams(config)
    run_data, initial = jitted_init_run(config, Hparams(*(np.asarray(x)[0] for x in hparams)))
    dataset = make_dataset(config.m, config.op)
    ours = run_sweep(config, hparams)

    shape = (config.m, config.layers, config.d_model, config.heads, config.d_mlp, config.layernorm)
    if args.reference == "transformer-lens":
        model = HookedLastPosition(*shape, initial.params)
    else:
        model = Transformer(*shape).double()
        load_flax_transformer(model, initial.params)
    pairs = torch.as_tensor(np.stack([dataset.a, dataset.b], axis=1), dtype=torch.long)
    labels = torch.as_tensor(dataset.label, dtype=torch.long)
    train, test = torch.as_tensor(np.array(run_data.train_pairs)), torch.as_tensor(np.array(run_data.test_pairs))
    with torch.no_grad():
        initial_logits = model(pairs).numpy()
    betas = (args.betas[0], args.torch_beta2 if args.torch_beta2 is not None else args.betas[1])
    losses = train_transformer_reference(model, pairs[train], labels[train], args.steps, args.lr, args.wd, betas,
                                         args.warmup_steps)
    with torch.no_grad():
        test_loss = torch.nn.functional.cross_entropy(model(pairs[test]), labels[test]).item()
    reference = model.weights()
    final = ours.state.params["params"]
    last = final[f"block_{config.layers - 1}"]
    grokjax_params = {"W_E": final["embed"]["embedding"], "W_pos": final["position_embedding"], "W_U": final["unembed"]["kernel"],
                      "W_in": last["fc1"]["kernel"], "W_Q": final["block_0"]["attention"]["query"]["kernel"]}
    deviations = {
        "initial logits (every pair)": scaled_deviation(
            jax.jit(make_model(config).apply)(initial.params, dataset.a, dataset.b)[0], initial_logits),
        f"training loss, each of {args.steps} steps": float(relative_deviation(ours.metrics["train_loss"][0], losses).max()),
        "test loss after training": float(relative_deviation(ours.metrics["test_loss"][0, -1], test_loss)),
        **{f"final {name}": scaled_deviation(grokjax_params[name], reference[name].detach().numpy()) for name in reference},
    }
    print(f"transformer parity against {args.reference}, float64: m={config.m} {config.layers} layer(s) d_model "
          f"{config.d_model} {config.heads} heads d_mlp {config.d_mlp}{' LayerNorm' if config.layernorm else ''}, "
          f"{config.n_train} training pairs, full-batch AdamW lr {args.lr:g} wd {args.wd:g} betas {betas[0]:g}/{betas[1]:g} "
          f"(grokjax {args.betas[0]:g}/{args.betas[1]:g})"
          f"{f', warm-up {args.warmup_steps} steps' if args.warmup_steps else ''}, seed {args.seed}; bound {FLOAT64_BOUND:g}")
    failed = 0
    for name, value in deviations.items():
        ok = value <= FLOAT64_BOUND
        failed += not ok
        print(f"  {name:34s} {value:.2e}  {'PASS' if ok else 'FAIL'}")
    print("every quantity agrees" if not failed else f"{failed} quantity(ies) beyond the bound")
    return 1 if failed else 0


def add_configuration_arguments(parser: argparse.ArgumentParser) -> None:
    """The run configuration, defaulting to the study's headline one."""
    parser.add_argument("--m", type=int, default=97, help="modulus")
    parser.add_argument("--hidden", type=int, default=128, help="hidden width")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    parser.add_argument("--wd", type=float, default=1e-4, help="weight decay")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m grokjax.crosscheck", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("parity", help="same start, same data, same order: trajectories must agree",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_configuration_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizers", default="adam,adamw", help="comma-separated optimizers to check")
    p.add_argument("--batch-sizes", type=int_list, default="128,0",
                   help="comma-separated batch sizes to check; 0 = full batch")
    p.add_argument("--torch-optimizer", choices=("adam", "adamw", "sgd"), default=None,
                   help="give the PyTorch side another optimizer (to see a mismatch fail)")

    s = commands.add_parser("seeds", help="independent seeds in each framework: do the distributions agree?",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_configuration_arguments(s)
    s.add_argument("--batch-size", type=int, default=128, help="0 = full batch")
    s.add_argument("--seeds", type=int, default=8, help="seeds per framework")
    s.add_argument("--epochs", type=int, default=1000)
    s.add_argument("--alpha", type=float, default=0.05, help="test level for the verdict")
    s.add_argument("--out", default=None, help="results folder (default: a new results/crosscheck-seeds-<time>)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")

    h = commands.add_parser("history", help="the PyTorch study's saved histories against a grokjax seed band",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    h.add_argument("file", help="a *_hist.json of one run, or the combined file with 'hist' and 'grok_pt'")
    h.add_argument("--seeds", type=int, default=5, help="grokjax seeds per configuration")
    h.add_argument("--op", choices=("add", "sub", "mul", "div"), default="add", help="the study's operation (not in its file names)")
    h.add_argument("--batch-size", type=int, default=128, help="the study's batch size")
    h.add_argument("--train-frac", type=float, default=0.5, help="the study's train fraction")
    h.add_argument("--out", default=None, help="results folder (default: a new results/crosscheck-history-<time>)")
    h.add_argument("--quiet", action="store_true", help="no progress bars")

    t = commands.add_parser("transformer", help="the transformer against a PyTorch transcription, float64",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--m", type=int, default=113, help="modulus (a + b)")
    t.add_argument("--train-frac", type=float, default=0.3)
    t.add_argument("--layers", type=int, default=1)
    t.add_argument("--d-model", type=int, default=128)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--d-mlp", type=int, default=512)
    t.add_argument("--layernorm", action=argparse.BooleanOptionalAction, default=False)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--wd", type=float, default=1.0)
    t.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.98))
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--steps", type=int, default=300, help="full-batch AdamW steps")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--reference", choices=("transcription", "transformer-lens"), default="transcription",
                   help="the PyTorch side: grokjax's transcription (torch_ref.Transformer) or TransformerLens's "
                   "HookedTransformer (needs the transformer-lens package)")
    t.add_argument("--torch-beta2", type=float, default=None, help="give the PyTorch side another beta2 (to see a mismatch fail)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from grokjax.driver import enable_compilation_cache

    parser = build_parser()
    args = parser.parse_args(argv)
    enable_compilation_cache()
    try:
        return {"parity": run_parity, "seeds": run_seeds, "history": run_history,
                "transformer": run_transformer}[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
