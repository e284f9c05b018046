"""Training: one run's pure step/epoch/chunk functions, vmapped over the runs axis.

Shape of the program (read top to bottom):

* :func:`init_run` draws a run's split and initial parameters from its seeds;
* :func:`train_step` is one optimizer step on one minibatch;
* :func:`train_epoch_steps` scans ``train_step`` over an epoch's minibatches, and
  :func:`train_epoch` adds the epoch's metrics;
* :func:`freeze_diverged` keeps a run whose loss or parameters stop being finite at its
  last finite state;
* :func:`train_chunk` scans epochs over a fixed number of epochs;
* :func:`fourier_snapshot` measures a run's Fourier features from its parameters (at
  chunk ends, every ``fourier_every`` epochs);
* :func:`make_train` vmaps ``init_run`` and ``train_chunk`` over runs (``shard_map`` over
  devices when there are several) and jits them; :func:`prepare_sweep` compiles;
* :func:`run_sweep` drives the compiled chunk from Python (progress bar, bounded
  memory, checkpoints) and gathers the ``[runs, epochs]`` metric arrays;
* :func:`train_plan` trains the programs of a :class:`~grokjax.config.SweepPlan` (one per
  combination of static values) one after another and concatenates their runs.

Everything that varies across runs (seed, data seed, lr, wd, training-set size) is a
traced array in :class:`Hparams`; everything in :class:`~grokjax.config.SweepConfig` is
static. A run whose training set is smaller than the program's largest masks the rest.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from grokjax import fourier
from grokjax import metrics as M
from grokjax.config import SweepConfig, SweepPlan, config_hash, varied_axes
from grokjax.data import Dataset, batch_schedule, make_dataset, probe_positions
from grokjax.model import ModularNet, fc1_kernel, fc2_kernel, operand_weights
from grokjax.optim import make_optimizer
from grokjax.results import previous_checkpoint, read_program_part, resume_checkpoint, save_checkpoint, write_program_part


def enable_compilation_cache() -> None:
    """Keep compiled programs on disk (JAX's persistent cache), so that a second sweep of
    the same shape skips XLA compilation. ``GROKJAX_CACHE_DIR`` chooses the folder
    (default ``~/.cache/grokjax``; empty turns it off); a ``JAX_COMPILATION_CACHE_DIR``
    already set wins."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    path = os.environ.get("GROKJAX_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "grokjax"))
    if path:
        jax.config.update("jax_compilation_cache_dir", path)


class Hparams(NamedTuple):
    """One run's traced hyperparameters (a leading runs axis in a sweep)."""

    seed: Any  # int32: initialisation and batch order
    data_seed: Any  # int32: train/test split
    lr: Any  # float, in the configuration's dtype
    wd: Any
    n_train: Any  # int32: training pairs, between config.n_train_min and config.n_train


class RunData(NamedTuple):
    """A run's split, as indices into the :class:`~grokjax.data.Dataset`: the first
    ``n_train`` pairs of a random permutation train, the rest test. The arrays have the
    configuration's static sizes; the weights (1 or 0) say which entries belong to the run."""

    train_pairs: jax.Array  # [config.n_train] int32
    train_weight: jax.Array  # [config.n_train] 1.0 for the run's training pairs
    test_pairs: jax.Array  # [config.n_test] int32
    test_weight: jax.Array  # [config.n_test] 1.0 for the run's test pairs


class RunState(NamedTuple):
    """What one run carries from epoch to epoch."""

    params: Any
    opt_state: Any
    prev_w1: jax.Array  # fc1 kernel after the previous epoch, for w1_delta_norm
    grad_history: jax.Array  # [GRAD_HISTORY, 2h, h] ring buffer of last-minibatch fc1 gradients
    grad_gram: jax.Array  # [GRAD_HISTORY, GRAD_HISTORY] their dot products, updated one row per epoch
    diverged_epoch: jax.Array  # int32: 0-based epoch whose loss or parameters stopped being finite; -1 if none


def grid_rows(config: SweepConfig) -> list[tuple[int, int | None, float, float, float]]:
    """The cartesian grid seeds x data_seeds x train_fracs x wds x lrs as (seed, data seed,
    train fraction, wd, lr) rows, lr fastest; the data seed is None where each run's seed
    fixes its split."""
    return list(itertools.product(config.seeds, config.data_seeds or (None,), config.train_fracs, config.wds, config.lrs))


def grid_hparams(config: SweepConfig) -> Hparams:
    """The grid of :func:`grid_rows` as per-run arrays, one runs axis."""
    seed, data_seed, train_frac, wd, lr = zip(*grid_rows(config))
    return Hparams(
        seed=np.array(seed, np.int32),
        data_seed=np.array([s if d is None else d for s, d in zip(seed, data_seed)], np.int32),
        wd=np.array(wd, config.dtype),
        lr=np.array(lr, config.dtype),
        n_train=np.array([int(frac * config.n_pairs) for frac in train_frac], np.int32),
    )


def run_keys(hp: Hparams) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(split, init, shuffle) keys. The split key depends on ``data_seed`` alone, so runs
    sharing a data seed share a split, and ``data_seed == seed`` reproduces the default."""
    split_key = jax.random.fold_in(jax.random.key(hp.data_seed), 0)
    seed_key = jax.random.key(hp.seed)
    return split_key, jax.random.fold_in(seed_key, 1), jax.random.fold_in(seed_key, 2)


def make_model(config: SweepConfig) -> ModularNet:
    return ModularNet(config.m, config.hidden, jnp.dtype(config.dtype), config.model == "li2", config.activation)


def split_run(config: SweepConfig, key: jax.Array, n_train: jax.Array) -> RunData:
    """A random permutation of the pairs: the first ``n_train`` train, the rest test."""
    order = jax.random.permutation(key, config.n_pairs)
    weight = lambda keep: keep.astype(config.dtype)  # noqa: E731
    return RunData(
        train_pairs=order[: config.n_train],
        train_weight=weight(jnp.arange(config.n_train) < n_train),
        test_pairs=order[config.n_train_min :],
        test_weight=weight(jnp.arange(config.n_train_min, config.n_pairs) >= n_train),
    )


def init_run(config: SweepConfig, hp: Hparams) -> tuple[RunData, RunState]:
    split_key, init_key, _ = run_keys(hp)
    run_data = split_run(config, split_key, hp.n_train)
    dummy = jnp.zeros((1,), jnp.int32)
    params = make_model(config).init(init_key, dummy, dummy)
    opt_state = make_optimizer(config.optimizer, hp.lr, hp.wd).init(params)
    w1 = fc1_kernel(params)
    state = RunState(params, opt_state, w1, jnp.zeros((M.GRAD_HISTORY,) + w1.shape, w1.dtype),
                     jnp.zeros((M.GRAD_HISTORY, M.GRAD_HISTORY), w1.dtype), jnp.int32(-1))
    return run_data, state


def batch_loss(model: ModularNet, loss_kind: str, params, a, b, labels, weights) -> tuple[jax.Array, jax.Array]:
    """Weighted mean loss (padding and masked pairs have weight 0) and the number correct."""
    logits, _ = model.apply(params, a, b)
    # at least 1 below: a run with a smaller training set has empty steps (skipped by train_step)
    loss = jnp.sum(weights * M.per_example_loss(loss_kind, logits, labels)) / jnp.maximum(jnp.sum(weights), 1)
    return loss, jnp.sum(weights * M.is_correct(logits, labels))


class StepCarry(NamedTuple):
    params: Any
    opt_state: Any
    loss_sum: jax.Array  # sum over the epoch's examples, for the running average
    correct_sum: jax.Array
    grad_w1: jax.Array  # fc1 kernel gradient of the latest step


def train_step(
    model: ModularNet,
    loss_kind: str,
    optimizer: optax.GradientTransformation,
    dataset: Dataset,
    run_data: RunData,
    skip_empty: bool,
    carry: StepCarry,
    batch: tuple[jax.Array, jax.Array],
) -> tuple[StepCarry, None]:
    """One optimizer step on the minibatch ``run_data.train_pairs[positions]``. With
    ``skip_empty`` (runs of the program differ in training-set size), a batch without
    examples, past the run's own last one, leaves parameters, optimizer state and the
    latest gradient untouched."""
    positions, weights = batch
    index = run_data.train_pairs[positions]
    weights = weights * run_data.train_weight[positions]
    (loss, n_correct), grads = jax.value_and_grad(batch_loss, argnums=2, has_aux=True)(
        model, loss_kind, carry.params, dataset.a[index], dataset.b[index], dataset.label[index], weights
    )
    updates, opt_state = optimizer.update(grads, carry.opt_state, carry.params)
    params = optax.apply_updates(carry.params, updates)
    n = jnp.sum(weights)
    grad_w1 = fc1_kernel(grads)
    if skip_empty:
        keep = lambda new, old: jnp.where(n > 0, new, old)  # noqa: E731
        params, opt_state, grad_w1 = jax.tree.map(keep, (params, opt_state, grad_w1),
                                                  (carry.params, carry.opt_state, carry.grad_w1))
    return StepCarry(params, opt_state, carry.loss_sum + loss * n, carry.correct_sum + n_correct, grad_w1), None


def epoch_keys(hp: Hparams, epoch: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(batch order, feature-diversity batch) keys of one epoch, from the run's seed alone."""
    _, _, shuffle_key = run_keys(hp)
    order_key, probe_key = jax.random.split(jax.random.fold_in(shuffle_key, epoch))
    return order_key, probe_key


def train_epoch_steps(
    config: SweepConfig, hp: Hparams, dataset: Dataset, run_data: RunData, params, opt_state, epoch: jax.Array
) -> StepCarry:
    """One epoch of optimizer steps, minibatch by minibatch, in the epoch's shuffled order."""
    w1 = fc1_kernel(params)
    zero = jnp.zeros((), w1.dtype)
    optimizer = make_optimizer(config.optimizer, hp.lr, hp.wd)
    skip_empty = config.masked_sizes and config.batch_size != 0
    carry, _ = jax.lax.scan(
        partial(train_step, make_model(config), config.loss, optimizer, dataset, run_data, skip_empty),
        StepCarry(params, opt_state, zero, zero, jnp.zeros_like(w1)),
        batch_schedule(epoch_keys(hp, epoch)[0], hp.n_train, config.effective_batch, config.train_sizes),
    )
    return carry


def geometry_metrics(
    config: SweepConfig, hp: Hparams, dataset: Dataset, run_data: RunData, params, grad_w1, grad_gram, epoch
) -> dict[str, jax.Array]:
    """The hidden layer's geometry after an epoch: the GEOMETRY_METRICS, the costly part
    of the study's measurements (an SVD, three pairwise-cosine matrices)."""
    # Feature diversity on one batch drawn like the first of a fresh shuffled pass, as the study does.
    probe = probe_positions(epoch_keys(hp, epoch)[1], hp.n_train, config.train_sizes, config.effective_batch)
    pairs = run_data.train_pairs[probe]
    _, features = make_model(config).apply(params, dataset.a[pairs], dataset.b[pairs])
    features = features * run_data.train_weight[probe][:, None]  # masked rows: zero, no singular value
    return {
        "grad_cosine_sim": M.grad_cosine_sim(grad_gram, jnp.minimum(epoch + 1, M.GRAD_HISTORY)),
        "feature_diversity": M.feature_diversity(features),
        "neuron_grad_cosine": M.neuron_grad_cosine(grad_w1),
        "node_similarity": M.node_similarity(fc1_kernel(params)),
    }


def train_epoch(
    config: SweepConfig, hp: Hparams, dataset: Dataset, run_data: RunData, state: RunState, epoch: jax.Array
) -> tuple[RunState, dict[str, jax.Array]]:
    """Train one epoch (0-based index ``epoch``) and measure it, as the study logs it; the
    geometry metrics only every ``config.geometry_every`` epochs (NaN in between)."""
    carry = train_epoch_steps(config, hp, dataset, run_data, state.params, state.opt_state, epoch)
    params = carry.params

    test, test_weight = run_data.test_pairs, run_data.test_weight
    evaluate = M.looped_on_cpu(partial(batch_loss, make_model(config), config.loss))
    test_loss, test_correct = evaluate(params, dataset.a[test], dataset.b[test], dataset.label[test], test_weight)
    w1 = fc1_kernel(params)
    slot = epoch % M.GRAD_HISTORY
    grad_gram = M.updated_gram(state.grad_gram, state.grad_history, carry.grad_w1, slot)
    grad_history = state.grad_history.at[slot].set(carry.grad_w1)
    metrics = {
        "train_loss": carry.loss_sum / hp.n_train,
        "train_acc": carry.correct_sum / hp.n_train,
        "test_loss": test_loss,
        "test_acc": test_correct / jnp.sum(test_weight),
        "w1_norm": M.frobenius_norm(w1),
        "w1_delta_norm": jnp.where(epoch == 0, 0.0, M.frobenius_norm(w1 - state.prev_w1)),
        "grad_norm": M.frobenius_norm(carry.grad_w1),
    }
    measure = partial(geometry_metrics, config, hp, dataset, run_data, params, carry.grad_w1, grad_gram)
    skip = lambda epoch: {name: jnp.full((), jnp.nan, w1.dtype) for name in M.GEOMETRY_METRICS}  # noqa: E731
    if config.geometry_every <= 1:
        metrics.update((measure if config.geometry_every == 1 else skip)(epoch))
    else:  # epoch is the same for every run (not batched), so this stays a real branch under vmap
        metrics.update(jax.lax.cond((epoch + 1) % config.geometry_every == 0, measure, skip, epoch))
    return RunState(params, carry.opt_state, w1, grad_history, grad_gram, state.diverged_epoch), metrics


def freeze_diverged(
    old: RunState, new: RunState, metrics: dict[str, jax.Array], epoch: jax.Array
) -> tuple[RunState, dict[str, jax.Array]]:
    """Keep a run's last finite state once its loss or parameters stop being finite (say,
    lr 10): the run stops updating, its metrics read NaN from that epoch on, and
    ``diverged_epoch`` records when. The other runs of the sweep are unaffected."""
    finite = jnp.isfinite(metrics["train_loss"])
    for leaf in jax.tree.leaves(new.params):
        finite &= jnp.all(jnp.isfinite(leaf))
    frozen = (old.diverged_epoch >= 0) | ~finite
    state = jax.tree.map(lambda before, after: jnp.where(frozen, before, after), old, new)
    diverged_epoch = jnp.where(frozen, jnp.where(old.diverged_epoch >= 0, old.diverged_epoch, epoch), -1)
    state = state._replace(diverged_epoch=diverged_epoch.astype(old.diverged_epoch.dtype))
    return state, {name: jnp.where(frozen, jnp.nan, value) for name, value in metrics.items()}


def train_chunk(
    config: SweepConfig,
    chunk_epochs: int,
    hp: Hparams,
    dataset: Dataset,
    run_data: RunData,
    state: RunState,
    first_epoch: jax.Array,
) -> tuple[RunState, dict[str, jax.Array]]:
    """Scan ``chunk_epochs`` epochs from ``first_epoch``. Epochs past ``config.epochs``
    (the tail of the last chunk) leave the state untouched and report zeros, so every
    chunk has one shape and the sweep compiles once."""

    def run_epoch(state, epoch):
        return freeze_diverged(state, *train_epoch(config, hp, dataset, run_data, state, epoch), epoch)

    def skip_epoch(state, epoch):
        return state, {name: jnp.zeros((), config.dtype) for name in M.METRIC_NAMES}

    def epoch_body(state, epoch):
        return jax.lax.cond(epoch < config.epochs, run_epoch, skip_epoch, state, epoch)

    return jax.lax.scan(epoch_body, state, first_epoch + jnp.arange(chunk_epochs))


def fourier_snapshot(config: SweepConfig, dataset: Dataset, run_data: RunData, params) -> dict[str, jax.Array]:
    """A run's Fourier features (see :mod:`grokjax.fourier`) and the norm of the signal its
    output layer sends back to the hidden features over the training set (``gf_norm``)."""
    summary = fourier.fourier_summary(*operand_weights(params))
    train = run_data.train_pairs
    outputs, _ = make_model(config).apply(params, dataset.a[train], dataset.b[train])
    summary["gf_norm"] = M.backprop_signal_norm(config.loss, outputs, dataset.label[train], fc2_kernel(params),
                                                run_data.train_weight)
    return summary


def snapshot_epochs(config: SweepConfig) -> np.ndarray:
    """Completed epochs at which Fourier snapshots are taken: 0 (the initialisation), every
    ``fourier_every``-th and the last; empty when ``fourier_every`` is 0."""
    if not config.fourier_every:
        return np.zeros(0, np.int64)
    return np.unique(np.append(np.arange(0, config.epochs + 1, config.fourier_every), config.epochs))


def chunk_length(config: SweepConfig) -> int:
    """Epochs per compiled chunk: at most ``config.chunk_epochs``, spread evenly so the
    last chunk wastes as little as possible; with Fourier snapshots, the largest divisor
    of ``fourier_every`` not above ``chunk_epochs``, so that every snapshot falls on a
    chunk's end."""
    if config.fourier_every:
        return min(config.snapshot_chunk, config.epochs)  # no multiple of fourier_every before the end when shorter
    n_chunks = -(-config.epochs // config.chunk_epochs)
    return -(-config.epochs // n_chunks)


class Trainer(NamedTuple):
    init: Callable  # (hparams) -> (run_data, state), all with a leading runs axis
    train_chunk: Callable  # (hparams, dataset, run_data, state, first_epoch) -> (state, metrics [runs, chunk])
    snapshot: Callable  # (dataset, run_data, params) -> Fourier snapshot, leading runs axis
    chunk_epochs: int


def make_train(config: SweepConfig, mesh: Mesh | None = None) -> Trainer:
    """Vmap the per-run functions over the runs axis and jit them. The state is donated
    between chunks so that its buffers are reused in place. With a ``mesh`` (one axis,
    "runs"), every device runs the vmapped functions on its own share of the runs
    (``shard_map``): runs never exchange data, so the program has no communication."""
    chunk_epochs = chunk_length(config)
    init = jax.vmap(partial(init_run, config))
    chunk = jax.vmap(partial(train_chunk, config, chunk_epochs), in_axes=(0, None, 0, 0, None))
    snapshot = jax.vmap(partial(fourier_snapshot, config), in_axes=(None, 0, 0))
    if config.run_group:
        chunk = in_run_groups(chunk, config.run_group)
    init = spread_over_runs(init, mesh, (True,))
    chunk = spread_over_runs(chunk, mesh, (True, False, True, True, False))
    snapshot = spread_over_runs(snapshot, mesh, (False, True, True))
    return Trainer(jax.jit(init), jax.jit(chunk, donate_argnums=3), jax.jit(snapshot), chunk_epochs)


def spread_over_runs(vmapped: Callable, mesh: Mesh | None, per_run: tuple[bool, ...]) -> Callable:
    """``vmapped`` run by every device of ``mesh`` on its own share of the runs
    (``shard_map``); the arguments marked ``per_run`` are split along their runs axis, the
    others replicated, the outputs split. Unchanged without a mesh."""
    if mesh is None:
        return vmapped
    runs, replicated = PartitionSpec("runs"), PartitionSpec()
    in_specs = tuple(runs if split else replicated for split in per_run)
    # check_vma off: the per-run code builds scan carries from constants, which the
    # replication checker would ask to annotate; nothing here crosses devices anyway
    return jax.shard_map(vmapped, mesh=mesh, in_specs=in_specs, out_specs=runs, check_vma=False)


def in_run_groups(vmapped_chunk: Callable, group: int) -> Callable:
    """The vmapped chunk applied to ``group`` runs at a time, in a loop (``lax.map``) over
    the groups: same results, a smaller working set (the runs axis must be a multiple of
    ``group``)."""

    def grouped(hparams, dataset, run_data, state, first_epoch):
        split = lambda x: x.reshape((-1, group) + x.shape[1:])  # noqa: E731
        merge = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
        per_group = jax.lax.map(lambda g: vmapped_chunk(g[0], dataset, g[1], g[2], first_epoch),
                                jax.tree.map(split, (hparams, run_data, state)))
        return jax.tree.map(merge, per_group)

    return grouped


def runs_mesh(devices: list | None = None) -> Mesh | None:
    """``devices`` (default: all) on one axis named "runs"; None when there is only one."""
    devices = jax.devices() if devices is None else devices
    if len(devices) == 1:
        return None
    return jax.make_mesh((len(devices),), ("runs",), axis_types=(AxisType.Auto,), devices=devices)


def pad_runs(hparams: Hparams, multiple: int) -> Hparams:
    """Pad the runs axis to a multiple of ``multiple`` with copies of the last run."""
    padding = -len(hparams.seed) % multiple
    return Hparams(*(np.concatenate([x, np.repeat(x[-1:], padding)]) for x in map(np.asarray, hparams)))


class SweepResult(NamedTuple):
    hparams: Hparams  # numpy, [runs] each
    metrics: dict[str, np.ndarray]  # name -> [runs, epochs], in the configuration's dtype
    state: RunState  # final per-run state (leading runs axis)
    compile_seconds: float
    train_seconds: float
    local_runs: np.ndarray  # [runs] bool: the runs this process trained (all, unless several processes share the sweep)
    fourier: dict[str, np.ndarray]  # name -> [runs, snapshots, ...] at snapshot_epochs(config); empty without snapshots


def local_rows(array: jax.Array, n_runs: int) -> list[tuple[slice, np.ndarray]]:
    """The rows of a runs-axis array held by this process's devices, padding rows dropped."""
    rows = []
    for shard in array.addressable_shards:
        start, stop, _ = shard.index[0].indices(array.shape[0]) if shard.index else (0, array.shape[0], 1)
        stop = min(stop, n_runs)
        if stop > start:
            rows.append((slice(start, stop), np.asarray(shard.data)[: stop - start]))
    return rows


def without_padding(state: RunState, n_runs: int) -> RunState:
    """The state of the sweep's own runs as host arrays: what a checkpoint keeps, so that
    a sweep may resume on another number of devices (which pads the runs differently)."""
    return jax.tree.map(lambda x: np.asarray(x)[:n_runs], state)


def with_padding(saved: RunState, fresh: RunState) -> RunState:
    """``saved`` (the sweep's own runs) in the place of the first runs of ``fresh``, a
    freshly initialised state padded and placed for this sweep's devices."""
    def place(saved_leaf, fresh_leaf):
        rows = np.concatenate([saved_leaf, np.asarray(fresh_leaf)[len(saved_leaf):]])
        return jax.device_put(rows, fresh_leaf.sharding)

    return jax.tree.map(place, saved, fresh)


class SweepInterrupted(Exception):
    """Training stopped at a chunk boundary on request; the checkpoint holds everything so far."""

    def __init__(self, next_epoch: int):
        super().__init__(f"interrupted before epoch {next_epoch + 1}")
        self.next_epoch = next_epoch
        self.program = ""  # which program of a plan, when it has several


class PreparedSweep(NamedTuple):
    """A sweep ready to train: inputs on the devices and the compiled chunk."""

    hparams: Hparams  # padded to a multiple of the device count, placed across the devices
    dataset: Dataset
    run_data: RunData
    state: RunState
    chunk: Callable  # compiled (hparams, dataset, run_data, state, first_epoch) -> (state, metrics)
    snapshot: Callable | None  # compiled (dataset, run_data, params) -> Fourier snapshot; None without snapshots
    chunk_epochs: int
    compile_seconds: float


class PlacedRuns(NamedTuple):
    """A sweep's runs initialised on their devices, with the functions to train them."""

    trainer: Trainer
    hparams: Hparams  # padded to a multiple of the device count (and run group), placed across the devices
    dataset: Dataset
    run_data: RunData
    state: RunState


def place_runs(config: SweepConfig, hparams: Hparams, devices: list | None = None) -> PlacedRuns:
    """Check the runs' sizes, pad the runs axis for ``devices`` (default: all), spread it over
    them and initialise every run."""
    if np.any(hparams.n_train < config.n_train_min) or np.any(hparams.n_train > config.n_train):
        raise ValueError(f"every run's n_train must lie in [{config.n_train_min}, {config.n_train}] "
                         "(the configuration's min_train_frac and train_fracs)")
    if config.batch_size and not np.isin(hparams.n_train, config.train_sizes).all():
        raise ValueError(f"in minibatch training every run's n_train must be one of the sizes of train_fracs, "
                         f"{', '.join(map(str, config.train_sizes))}")
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs jax.config.update('jax_enable_x64', True) before any JAX call")
    mesh = runs_mesh(devices)
    trainer = make_train(config, mesh)
    dataset = Dataset(*(jnp.asarray(x) for x in make_dataset(config.m, config.op)))
    # every device needs a whole number of run groups
    hparams = pad_runs(hparams, (mesh.size if mesh is not None else 1) * max(config.run_group, 1))
    if mesh is not None:
        sharding = NamedSharding(mesh, PartitionSpec("runs"))
        # every process holds the whole grid and places the rows of its own devices
        hparams = Hparams(*(jax.make_array_from_callback(x.shape, sharding, lambda index, x=x: x[index]) for x in hparams))
    else:
        hparams = jax.device_put(hparams, devices[0] if devices else None)
    return PlacedRuns(trainer, hparams, dataset, *trainer.init(hparams))


def prepare_sweep(config: SweepConfig, hparams: Hparams, devices: list | None = None) -> PreparedSweep:
    """Place and initialise every run (:func:`place_runs`) and compile the chunk for these
    inputs (once per sweep shape)."""
    start = time.perf_counter()
    trainer, hparams, dataset, run_data, state = place_runs(config, hparams, devices)
    chunk = trainer.train_chunk.lower(hparams, dataset, run_data, state, np.int32(0)).compile()
    snapshot = trainer.snapshot.lower(dataset, run_data, state.params).compile() if config.fourier_every else None
    return PreparedSweep(hparams, dataset, run_data, state, chunk, snapshot, trainer.chunk_epochs,
                         time.perf_counter() - start)


def empty_fourier_history(sweep: PreparedSweep, n_runs: int, n_snapshots: int) -> dict[str, np.ndarray]:
    """NaN-filled host arrays [runs, snapshots, ...] for the Fourier snapshots; the
    per-neuron spectra in float16 to keep them small."""
    shapes = sweep.snapshot.out_info if n_snapshots else {}
    return {
        name: np.full((n_runs, n_snapshots) + shape.shape[1:], np.nan, np.float16 if name == "spectrum" else np.float32)
        for name, shape in shapes.items()
    }


def record_fourier(sweep: PreparedSweep, state: RunState, history: dict[str, np.ndarray], index: int, n_runs: int) -> None:
    """Take snapshot number ``index`` of every run and store this process's rows; a
    diverged run (frozen at its last finite state) reads NaN, as its metrics do."""
    snapshot = sweep.snapshot(sweep.dataset, sweep.run_data, state.params)
    for name, values in snapshot.items():
        for rows, local in local_rows(values, n_runs):
            history[name][rows, index] = local
    for rows, diverged_epoch in local_rows(state.diverged_epoch, n_runs):
        for name in snapshot:
            history[name][rows, index][diverged_epoch >= 0] = np.nan


RUN_GROUP_CANDIDATES = (0, 64, 32, 16, 8, 4, 2, 1)  # 0: all runs vmapped at once


def time_run_groups(config: SweepConfig, hparams: Hparams, candidates=RUN_GROUP_CANDIDATES) -> dict[int, float]:
    """Seconds per run-epoch of one steady-state epoch of this sweep, for each run-group
    size in ``candidates`` smaller than the runs per device (and 0): what a group size
    gains depends on the device's caches and the per-run work, so it is measured, on
    the same runs, each size compiled once and timed on its second epoch."""
    n_runs = len(hparams.seed)
    runs_per_device = -(-n_runs // jax.device_count())
    timings = {}
    for group in (g for g in candidates if g < runs_per_device):
        probe = dataclasses.replace(config, epochs=2, chunk_epochs=1, run_group=group, fourier_every=0)
        sweep = prepare_sweep(probe, hparams)
        state, metrics = sweep.chunk(sweep.hparams, sweep.dataset, sweep.run_data, sweep.state, np.int32(0))
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        jax.block_until_ready(sweep.chunk(sweep.hparams, sweep.dataset, sweep.run_data, state, np.int32(1)))
        timings[group] = (time.perf_counter() - start) / n_runs
    return timings


def run_sweep(
    config: SweepConfig,
    hparams: Hparams | None = None,
    progress: bool = False,
    checkpoint: Path | None = None,
    checkpoint_every: int = 1,
    stop_requested: Callable[[], bool] = lambda: False,
    description: str = "",
) -> SweepResult:
    """Train every run of the sweep in one compiled program, chunk by chunk.

    With ``checkpoint``, the full state and the metrics so far are saved there (atomically)
    every ``checkpoint_every`` chunks, and training resumes from it when it exists. When
    ``stop_requested()`` turns true, training stops after the current chunk, saves the
    checkpoint and raises :class:`SweepInterrupted`. With ``config.fourier_every``, a
    Fourier snapshot of every run is taken at each of :func:`snapshot_epochs`.
    """
    hparams = grid_hparams(config) if hparams is None else hparams
    n_runs = len(hparams.seed)
    fingerprint = config_hash(config)
    if checkpoint is not None and jax.process_count() > 1:
        raise ValueError("checkpoints are written by single-process sweeps only")
    sweep = prepare_sweep(config, hparams)
    state = sweep.state

    # the per-epoch metrics and the Fourier snapshots, checkpointed together
    snapshots = list(snapshot_epochs(config))
    history = {name: np.full((n_runs, config.epochs), np.nan, config.dtype) for name in M.METRIC_NAMES}
    history.update(empty_fourier_history(sweep, n_runs, len(snapshots)))
    local_runs = np.zeros(n_runs, bool)  # the runs on this process's devices: all of them unless --distributed
    for rows, _ in local_rows(sweep.hparams.seed, n_runs):
        local_runs[rows] = True
    start_epoch = 0
    if checkpoint is not None and (checkpoint.exists() or previous_checkpoint(checkpoint).exists()):
        own_runs = jax.tree.map(lambda x: jax.ShapeDtypeStruct((n_runs,) + x.shape[1:], x.dtype), state)
        saved, history, start_epoch = resume_checkpoint(checkpoint, own_runs, history, fingerprint)
        state = with_padding(saved, state)
    if start_epoch == 0 and snapshots:
        record_fourier(sweep, state, history, 0, n_runs)

    start = time.perf_counter()
    with tqdm(total=config.epochs, initial=start_epoch, unit="epoch", disable=not progress,
              desc=f"{description}{n_runs} runs") as bar:
        for chunk_index, first in enumerate(range(start_epoch, config.epochs, sweep.chunk_epochs), start=1):
            state, chunk_metrics = sweep.chunk(sweep.hparams, sweep.dataset, sweep.run_data, state, np.int32(first))
            n = min(sweep.chunk_epochs, config.epochs - first)
            for name in M.METRIC_NAMES:
                for rows, values in local_rows(chunk_metrics[name], n_runs):
                    history[name][rows, first : first + n] = values[:, :n]
            if first + n in snapshots:
                record_fourier(sweep, state, history, snapshots.index(first + n), n_runs)
            bar.update(n)
            latest = history["test_acc"][local_runs, first + n - 1]
            latest = latest[~np.isnan(latest)]  # diverged runs read NaN
            bar.set_postfix(median_test_acc=f"{np.median(latest):.3f}" if len(latest) else "-")
            stop = stop_requested() and first + n < config.epochs
            if checkpoint is not None and (stop or chunk_index % checkpoint_every == 0):
                save_checkpoint(checkpoint, without_padding(state, n_runs), history, first + n, fingerprint)
            if stop:
                raise SweepInterrupted(first + n)
    train_seconds = time.perf_counter() - start
    state = jax.tree.map(lambda x: x[:n_runs], state)  # without the padding runs
    metrics = {name: history.pop(name) for name in M.METRIC_NAMES}
    return SweepResult(hparams, metrics, state, sweep.compile_seconds, train_seconds, local_runs, history)


# --- a plan: several programs, one after another -----------------------------------------


class PlanResult(NamedTuple):
    """Every program of a :class:`~grokjax.config.SweepPlan`, runs concatenated in program order."""

    coordinates: dict[str, np.ndarray]  # [runs] each: seed, data_seed, wd, lr, n_train and every varied axis
    metrics: dict[str, np.ndarray]  # name -> [runs, epochs]
    fourier: dict[str, np.ndarray]  # name -> [runs, snapshots, ...], per-neuron arrays NaN-padded to the widest
    local_runs: np.ndarray  # [runs] bool: the runs this process trained
    programs: list[dict]  # per program: what sets it apart, its run count, compile and training seconds


def program_coordinates(plan: SweepPlan, index: int) -> dict[str, np.ndarray]:
    """The per-run coordinates of program ``index``: its grid's hyperparameters, the
    training fraction when it varies, and the value of every varied static axis."""
    program = plan.programs[index]
    coordinates = {name: np.asarray(values) for name, values in grid_hparams(program)._asdict().items()}
    if "train_frac" in varied_axes(plan.to_dict()):
        coordinates["train_frac"] = np.array([frac for _, _, frac, _, _ in grid_rows(program)])
    for name in plan.axes:
        coordinates[name] = np.full(program.n_runs, getattr(program, name))
    return coordinates


def checkpoint_path(folder: Path, index: int, n_programs: int) -> Path:
    """Where program ``index`` keeps its checkpoint: ``checkpoint.npz`` for a lone program."""
    return folder / ("checkpoint.npz" if n_programs == 1 else f"checkpoint-{index}.npz")


def remove_checkpoints(path: Path) -> None:
    """A finished program's checkpoint and the one before it."""
    for stale in (path, previous_checkpoint(path)):
        stale.unlink(missing_ok=True)


def train_plan(
    plan: SweepPlan,
    folder: Path | None = None,
    progress: bool = False,
    checkpoint_every: int = 1,
    stop_requested: Callable[[], bool] = lambda: False,
    choose_run_group: Callable[[SweepConfig], tuple[SweepConfig, dict]] | None = None,
) -> PlanResult:
    """Train the plan's programs one after another, each one compiled program vmapping its
    runs (see :func:`run_sweep`). With a ``folder``, each program checkpoints there, and with
    several programs each finished one is kept as ``program-<i>.npz`` until the results are
    written, so that a resumed plan skips the programs already finished and continues the
    interrupted one. ``choose_run_group`` may pick each program's run-group size first (it
    returns the program to train and what it measured)."""
    parts = []
    n_programs = len(plan.programs)
    for index, program in enumerate(plan.programs):
        finished = folder / f"program-{index}.npz" if folder is not None and n_programs > 1 else None
        if finished is not None and finished.exists():
            parts.append(PlanResult(*read_program_part(finished, M.METRIC_NAMES)))
            remove_checkpoints(checkpoint_path(folder, index, n_programs))
            continue
        info = {name: getattr(program, name) for name in plan.axes}
        if choose_run_group is not None:
            program, measured = choose_run_group(program)
            info["run_group_auto_ms_per_run_epoch"] = measured
        label = f"program {index + 1}/{n_programs} ({plan.program_label(index)}): " if n_programs > 1 else ""
        try:
            sweep = run_sweep(program, progress=progress, checkpoint_every=checkpoint_every, stop_requested=stop_requested,
                              checkpoint=None if folder is None or jax.process_count() > 1 else
                              checkpoint_path(folder, index, n_programs), description=label)
        except SweepInterrupted as stopped:
            stopped.program = label
            raise
        info.update(n_runs=program.n_runs, run_group=program.run_group, compile_seconds=round(sweep.compile_seconds, 3),
                    train_seconds=round(sweep.train_seconds, 3),
                    ms_per_run_epoch=round(1e3 * sweep.train_seconds / (program.n_runs * program.epochs), 3))
        part = PlanResult(program_coordinates(plan, index), sweep.metrics, sweep.fourier, sweep.local_runs, [info])
        if finished is not None:
            write_program_part(finished, *part)
            remove_checkpoints(checkpoint_path(folder, index, n_programs))
        parts.append(part)
    return concatenate_parts(parts)


def concatenate_parts(parts: list[PlanResult]) -> PlanResult:
    """One PlanResult from the programs' own, runs in program order; per-neuron Fourier
    arrays of narrower programs padded with NaN to the widest."""
    fourier = {}
    for name in parts[0].fourier:
        arrays = [part.fourier[name] for part in parts]
        shape = np.max([a.shape[1:] for a in arrays], axis=0)
        fourier[name] = np.concatenate([np.pad(a, [(0, 0)] + [(0, int(n - k)) for n, k in zip(shape, a.shape[1:])],
                                               constant_values=np.nan) for a in arrays])
    return PlanResult(
        coordinates={name: np.concatenate([part.coordinates[name] for part in parts]) for name in parts[0].coordinates},
        metrics={name: np.concatenate([part.metrics[name] for part in parts]) for name in parts[0].metrics},
        fourier=fourier,
        local_runs=np.concatenate([part.local_runs for part in parts]),
        programs=[info for part in parts for info in part.programs],
    )
