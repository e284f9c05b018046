"""The host-side driver: trains a sweep's compiled program chunk by chunk.

* :func:`place_runs` pads the runs axis for the devices, spreads it over them and
  initialises every run; :func:`prepare_sweep` compiles the chunk ahead of time;
* :func:`run_sweep` calls the compiled chunk from Python (progress bar, bounded memory,
  checkpoints, Fourier snapshots) and gathers the ``[runs, epochs]`` metric arrays;
* :func:`time_run_groups` measures what a run-group size gains;
* :func:`train_plan` trains the programs of a :class:`~grokjax.config.SweepPlan` (one per
  combination of static values) one after another and concatenates their runs.

The functions it compiles are the pure ones of :mod:`grokjax.train`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from grokjax.config import GRID_AXES, OPTIONAL_GRID_AXES, SweepConfig, SweepPlan, config_hash, varied_axes
from grokjax.data import Dataset
from grokjax.results import (
    METRIC_NAMES,
    checkpoint_size,
    previous_checkpoint,
    read_program_part,
    resume_checkpoint,
    save_checkpoint,
    write_program_part,
)
from grokjax.train import (
    Hparams,
    RunData,
    RunState,
    Trainer,
    grid_hparams,
    grid_rows,
    make_train,
)


def configure_jax(plan: SweepPlan) -> None:
    """What a process sets before training ``plan``: float64 arithmetic when the plan asks
    for it, for the parameters or the loss (``jax_enable_x64``), and the persistent
    compilation cache."""
    if any("float64" in (program.dtype, program.loss_dtype) for program in plan.programs):
        jax.config.update("jax_enable_x64", True)
    enable_compilation_cache()


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


def snapshot_epochs(config: SweepConfig) -> np.ndarray:
    """Completed epochs at which Fourier snapshots are taken: 0 (the initialisation), every
    ``fourier_every``-th and the last; empty when ``fourier_every`` is 0."""
    if not config.fourier_every:
        return np.zeros(0, np.int64)
    return np.unique(np.append(np.arange(0, config.epochs + 1, config.fourier_every), config.epochs))


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
    checkpoints_written: int = 0


def local_rows(array: jax.Array, n_runs: int) -> list[tuple[slice, np.ndarray]]:
    """The rows of a runs-axis array held by this process's devices, padding rows dropped."""
    rows = []
    for shard in array.addressable_shards:
        start, stop, _ = shard.index[0].indices(array.shape[0]) if shard.index else (0, array.shape[0], 1)
        stop = min(stop, n_runs)
        if stop > start:
            rows.append((slice(start, stop), np.asarray(shard.data)[: stop - start]))
    return rows


def with_padding(saved: RunState, fresh: RunState) -> RunState:
    """``saved`` (the sweep's own runs) in the place of the first runs of ``fresh``, a
    freshly initialised state padded and placed for this sweep's devices."""
    def place(saved_leaf, fresh_leaf):
        rows = np.concatenate([saved_leaf, np.asarray(fresh_leaf)[len(saved_leaf):]])
        return jax.device_put(rows, fresh_leaf.sharding)

    return jax.tree.map(place, saved, fresh)


class CheckpointCadence(NamedTuple):
    """When a sweep saves its checkpoint: once ``minutes`` of training have passed since the
    last one (by ``clock``, in seconds), or every ``every_chunks`` chunks when that is set,
    whichever comes first; always at an interruption, never after the last chunk."""

    minutes: float = 5.0
    every_chunks: int | None = None
    clock: Callable[[], float] = time.monotonic

    def due(self, chunk_index: int, last_saved: float) -> bool:
        by_count = self.every_chunks is not None and chunk_index % self.every_chunks == 0
        return by_count or self.clock() - last_saved >= 60 * self.minutes


DEFAULT_CADENCE = CheckpointCadence()


def checkpoint_bytes(config: SweepConfig) -> int:
    """The size of one checkpoint of this program: every run's training state (parameters,
    optimizer moments, filter buffers) and the metric and Fourier history, from the shapes
    alone (nothing is initialised or compiled)."""
    trainer = make_train(config)
    hparams = grid_hparams(config)

    def shapes(hp):
        dataset = trainer.dataset(hp)
        run_data, state = trainer.init(hp)
        return state, trainer.snapshot(dataset, run_data, state.params) if config.fourier_every else {}

    state, snapshot = jax.eval_shape(shapes, hparams)
    n_snapshots = len(snapshot_epochs(config))
    history = {name: jax.ShapeDtypeStruct((config.n_runs, config.epochs), config.dtype) for name in METRIC_NAMES}
    history.update({name: jax.ShapeDtypeStruct((config.n_runs, n_snapshots) + x.shape[1:], snapshot_dtype(name))
                    for name, x in snapshot.items()})
    return checkpoint_size(jax.tree.leaves(state), history)


def checkpoint_record(plan: SweepPlan, cadence: CheckpointCadence) -> dict:
    """What config.json says of a plan's checkpoints: the largest program's size and the cadence."""
    return {"bytes": max(checkpoint_bytes(program) for program in plan.programs), "minutes": cadence.minutes,
            "every_chunks": cadence.every_chunks}


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
    if "float64" in (config.dtype, config.loss_dtype) and not jax.config.jax_enable_x64:
        raise ValueError(f"a float64 {'dtype' if config.dtype == 'float64' else 'loss'} needs "
                         "jax.config.update('jax_enable_x64', True) before any JAX call")
    mesh = runs_mesh(devices)
    trainer = make_train(config, mesh)
    # every device needs a whole number of run groups
    hparams = pad_runs(hparams, (mesh.size if mesh is not None else 1) * max(config.run_group, 1))
    if mesh is not None:
        sharding = NamedSharding(mesh, PartitionSpec("runs"))
        # every process holds the whole grid and places the rows of its own devices
        hparams = Hparams(*(jax.make_array_from_callback(x.shape, sharding, lambda index, x=x: x[index]) for x in hparams))
    else:
        hparams = jax.device_put(hparams, devices[0] if devices else None)
    return PlacedRuns(trainer, hparams, trainer.dataset(hparams), *trainer.init(hparams))


def prepare_sweep(config: SweepConfig, hparams: Hparams, devices: list | None = None) -> PreparedSweep:
    """Place and initialise every run (:func:`place_runs`) and compile the chunk for these
    inputs (once per sweep shape)."""
    start = time.perf_counter()
    trainer, hparams, dataset, run_data, state = place_runs(config, hparams, devices)
    chunk = trainer.train_chunk.lower(hparams, dataset, run_data, state, np.int32(0)).compile()
    snapshot = trainer.snapshot.lower(dataset, run_data, state.params).compile() if config.fourier_every else None
    return PreparedSweep(hparams, dataset, run_data, state, chunk, snapshot, trainer.chunk_epochs,
                         time.perf_counter() - start)


def snapshot_dtype(name: str) -> type:
    """How a Fourier snapshot array is kept on the host: the per-neuron spectra in float16, to keep them small."""
    return np.float16 if name == "spectrum" else np.float32


def empty_fourier_history(sweep: PreparedSweep, n_runs: int, n_snapshots: int) -> dict[str, np.ndarray]:
    """NaN-filled host arrays [runs, snapshots, ...] for the Fourier snapshots; the
    per-neuron spectra in float16 to keep them small."""
    shapes = sweep.snapshot.out_info if n_snapshots else {}
    return {
        name: np.full((n_runs, n_snapshots) + shape.shape[1:], np.nan, snapshot_dtype(name))
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
    cadence: CheckpointCadence = DEFAULT_CADENCE,
    stop_requested: Callable[[], bool] = lambda: False,
    description: str = "",
) -> SweepResult:
    """Train every run of the sweep in one compiled program, chunk by chunk.

    With ``checkpoint``, the full state and the metrics so far are saved there (atomically)
    at the end of a chunk when ``cadence`` says one is due, never after the last, and
    training resumes from it when it exists. When ``stop_requested()`` turns true, training
    stops after the current chunk, saves the checkpoint and raises :class:`SweepInterrupted`.
    With ``config.fourier_every``, a Fourier snapshot of every run is taken at each of
    :func:`snapshot_epochs`.
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
    history = {name: np.full((n_runs, config.epochs), np.nan, config.dtype) for name in METRIC_NAMES}
    history.update(empty_fourier_history(sweep, n_runs, len(snapshots)))
    local_runs = np.zeros(n_runs, bool)  # the runs on this process's devices: all of them unless --distributed
    for rows, _ in local_rows(sweep.hparams.seed, n_runs):
        local_runs[rows] = True
    start_epoch = 0
    if checkpoint is not None and (checkpoint.exists() or previous_checkpoint(checkpoint).exists()):
        own_runs = [jax.ShapeDtypeStruct((n_runs,) + x.shape[1:], x.dtype) for x in jax.tree.leaves(state)]
        saved, history, start_epoch = resume_checkpoint(checkpoint, own_runs, history, fingerprint)
        state = with_padding(jax.tree.unflatten(jax.tree.structure(state), saved), state)
    if start_epoch == 0 and snapshots:
        record_fourier(sweep, state, history, 0, n_runs)

    start = time.perf_counter()
    last_saved, written = cadence.clock(), 0
    with tqdm(total=config.epochs, initial=start_epoch, unit="epoch", disable=not progress,
              desc=f"{description}{n_runs} runs") as bar:
        for chunk_index, first in enumerate(range(start_epoch, config.epochs, sweep.chunk_epochs), start=1):
            state, chunk_metrics = sweep.chunk(sweep.hparams, sweep.dataset, sweep.run_data, state, np.int32(first))
            n = min(sweep.chunk_epochs, config.epochs - first)
            for name in METRIC_NAMES:
                for rows, values in local_rows(chunk_metrics[name], n_runs):
                    history[name][rows, first : first + n] = values[:, :n]
            if first + n in snapshots:
                record_fourier(sweep, state, history, snapshots.index(first + n), n_runs)
            bar.update(n)
            latest = history["test_acc"][local_runs, first + n - 1]
            latest = latest[~np.isnan(latest)]  # diverged runs read NaN
            bar.set_postfix(median_test_acc=f"{np.median(latest):.3f}" if len(latest) else "-")
            unfinished = first + n < config.epochs  # after the last chunk the results are written instead
            stop = stop_requested() and unfinished
            if checkpoint is not None and unfinished and (stop or cadence.due(chunk_index, last_saved)):
                save_checkpoint(checkpoint, jax.tree.leaves(state), history, first + n, fingerprint, n_runs)
                last_saved, written = cadence.clock(), written + 1
                stop = stop or stop_requested()  # a Ctrl-C during a long write: stop on this checkpoint
            if stop:
                raise SweepInterrupted(first + n)
    train_seconds = time.perf_counter() - start
    state = jax.tree.map(lambda x: x[:n_runs], state)  # without the padding runs
    metrics = {name: history.pop(name) for name in METRIC_NAMES}
    return SweepResult(hparams, metrics, state, sweep.compile_seconds, train_seconds, local_runs, history, written)


# --- a plan: several programs, one after another -----------------------------------------


class PlanResult(NamedTuple):
    """Every program of a :class:`~grokjax.config.SweepPlan`, runs concatenated in program order."""

    coordinates: dict[str, np.ndarray]  # [runs] each: seed, data_seed, wd, lr, n_train and every varied axis
    metrics: dict[str, np.ndarray]  # name -> [runs, epochs]
    fourier: dict[str, np.ndarray]  # name -> [runs, snapshots, ...], per-neuron arrays NaN-padded to the widest
    local_runs: np.ndarray  # [runs] bool: the runs this process trained
    programs: list[dict]  # per program: what sets it apart, its run count, compile and training seconds


def program_coordinates(plan: SweepPlan, index: int) -> dict[str, np.ndarray]:
    """The per-run coordinates of program ``index``: seed, data seed, wd, lr and training-set
    size, every other grid axis that lists several values, and the value of every varied
    static axis."""
    program = plan.programs[index]
    hparams = grid_hparams(program)
    coordinates = {name: np.asarray(getattr(hparams, name)) for name in ("seed", "data_seed", "wd", "lr", "n_train")}
    varied = varied_axes(plan.to_dict())
    rows = grid_rows(program)
    for name in (GRID_AXES[field] for field in OPTIONAL_GRID_AXES):
        if name in varied and name not in coordinates:
            coordinates[name] = np.array([row[name] for row in rows])
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
    cadence: CheckpointCadence = DEFAULT_CADENCE,
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
            parts.append(PlanResult(*read_program_part(finished, METRIC_NAMES)))
            remove_checkpoints(checkpoint_path(folder, index, n_programs))
            continue
        info = {name: getattr(program, name) for name in plan.axes}
        if choose_run_group is not None:
            program, measured = choose_run_group(program)
            info["run_group_auto_ms_per_run_epoch"] = measured
        label = f"program {index + 1}/{n_programs} ({plan.program_label(index)}): " if n_programs > 1 else ""
        try:
            sweep = run_sweep(program, progress=progress, cadence=cadence, stop_requested=stop_requested,
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
