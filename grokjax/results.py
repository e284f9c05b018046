"""The results folder: ``config.json``, ``metrics.npz``, ``summary.csv``, each written
atomically (a temporary file renamed into place), so a crash never leaves half a file.
Files are read back through :mod:`grokjax.files`.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import io
import json
import os
import platform
import shutil
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from grokjax.config import SweepConfig, SweepPlan
from grokjax.files import DamagedFile, check_shape, read_npz

# The order in which metrics are stored; every name is a [runs, epochs] array in metrics.npz.
METRIC_NAMES = (
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "w1_norm",
    "w1_delta_norm",
    "grad_norm",
    "grad_cosine_sim",
    "feature_diversity",
    "neuron_grad_cosine",
    "node_similarity",
    "softmax_collapse",
    "zero_loss_fraction",
    "nlm_alignment",
    "train_acc_clean",
    "train_acc_corrupted",
    "corrupted_true_acc",
    "secret_weight_share",
)
# Metrics added after results folders had been written: a folder without them reads NaN.
LATER_METRICS = ("softmax_collapse", "zero_loss_fraction", "nlm_alignment", "train_acc_clean", "train_acc_corrupted",
                 "corrupted_true_acc", "secret_weight_share")

# The metrics of the hidden layer's geometry: by far the costliest to measure, so a sweep
# may measure them only every few epochs (SweepConfig.geometry_every).
GEOMETRY_METRICS = ("grad_cosine_sim", "feature_diversity", "neuron_grad_cosine", "node_similarity")

PACKAGES = ("grokjax", "jax", "jaxlib", "flax", "optax", "numpy", "matplotlib")


def cpu_model() -> str:
    """The CPU's model name where the system reports one (Linux), else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def environment() -> dict:
    """Versions, backend and devices: what a reader needs to reproduce a result."""
    # JAX only here, when a run is recorded: reading and reporting results needs no JAX
    import jax

    from grokjax.devices import usable_cores

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "devices": [str(d.device_kind) for d in jax.devices()],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "cpu_devices": len(jax.devices("cpu")),
    }


def new_results_dir(out: str | Path | None, prefix: str = "sweep", root: str = "results", overwrite: bool = False) -> Path:
    """``out`` if given (it must not exist yet, or be empty; with ``overwrite``, an existing
    results folder, one that holds a config.json, is removed first), else a new folder
    ``root/prefix-<time>``; never an existing non-empty folder."""
    if out is not None and overwrite and Path(out).exists():
        if not (Path(out) / "config.json").exists():
            raise FileExistsError(f"--overwrite: {out} is not a grokjax results folder (no config.json); remove it yourself")
        shutil.rmtree(out)
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{prefix}-{stamp}"
        suffix = 1
        while path.exists():
            path = Path(root) / f"{prefix}-{stamp}-{suffix}"
            suffix += 1
    else:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f"output folder {path} already exists and is not empty; choose another --out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None], previous: Path | None = None) -> None:
    """Write ``data`` (bytes, or a function that writes into the open file) to a temporary
    file, then rename it to ``path``; with ``previous``, the file that was at ``path`` is
    kept there (renamed) until the new one is complete."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            data(f) if callable(data) else f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk, a second Ctrl-C: no half-written file (a checkpoint's may be gigabytes) stays
        tmp.unlink(missing_ok=True)
        raise
    if previous is not None and path.exists():
        os.replace(path, previous)
    os.replace(tmp, path)


def derived_sizes(config: SweepConfig) -> dict:
    """One program's sizes, derived from its configuration."""
    return {"n_pairs": config.n_pairs, "n_train": config.n_train, "n_test": config.n_test, "batch": config.effective_batch,
            "steps_per_epoch": config.steps_per_epoch, "n_runs": config.n_runs}


def config_record(plan: SweepPlan, command: str, extra: dict | None = None) -> dict:
    """What config.json holds: the resolved configuration, its derived sizes (per program
    when there are several), the command that ran, the environment and ``extra`` (timings)."""
    if len(plan.programs) == 1:
        derived = derived_sizes(plan.programs[0])
    else:
        derived = {"n_runs": plan.n_runs, "programs": [
            {**{name: getattr(program, name) for name in plan.axes}, **derived_sizes(program)} for program in plan.programs]}
    return {"config": plan.to_dict(), "derived": derived, "command": command, "environment": environment(), **(extra or {})}


def write_config(path: Path, plan: SweepPlan, command: str, extra: dict | None = None) -> None:
    """The :func:`config_record` as config.json."""
    write_atomic(path, (json.dumps(config_record(plan, command, extra), indent=2) + "\n").encode())


def timing_record(plan: SweepPlan, programs: list[dict]) -> dict:
    """config.json's timing: compile and training seconds over the programs, and each program's own."""
    compile_seconds = sum(info["compile_seconds"] for info in programs)
    train_seconds = sum(info["train_seconds"] for info in programs)
    return {
        "timing": {
            "compile_seconds": round(compile_seconds, 3),
            "train_seconds": round(train_seconds, 3),
            "ms_per_run_epoch": round(1e3 * train_seconds / (plan.n_runs * plan.epochs), 3),
        },
        "programs": programs,
    }


def write_metrics(path: Path, coordinates: dict[str, np.ndarray], metrics: dict[str, np.ndarray]) -> None:
    """One [runs, epochs] array per metric plus the per-run coordinates."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **metrics, **{name: np.asarray(v) for name, v in coordinates.items()})
    write_atomic(path, buffer.getvalue())


def write_fourier(path: Path, epochs: np.ndarray, snapshots: dict[str, np.ndarray]) -> None:
    """The Fourier snapshots: ``epochs`` [snapshots] (completed epochs) and one
    [runs, snapshots, ...] array per quantity (see :func:`grokjax.train.fourier_snapshot`)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, epochs=epochs, **snapshots)
    write_atomic(path, buffer.getvalue())


def format_cell(value) -> str:
    """CSV cell: empty for NaN (not reached); floats to float32 precision, so a wd of
    1e-4 reads 0.0001 and an epoch 380, not 380.0."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float):
        return "" if np.isnan(value) else format(value, ".7g")
    return str(value)


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Columns of equal length as a CSV table with a header."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in zip(*columns.values()):
        writer.writerow([format_cell(v) for v in row])
    write_atomic(path, text.getvalue().encode())


def save_figure(fig, path: Path) -> None:
    """A matplotlib Figure as a PNG at ``path``, written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_atomic(path, buffer.getvalue())


def previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint before the latest is kept: ``checkpoint.npz`` -> ``checkpoint.previous.npz``."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def save_checkpoint(path: Path, state_leaves: list, history: dict[str, np.ndarray], next_epoch: int,
                    config_hash: str, n_runs: int | None = None) -> None:
    """The full vmapped training state (its leaves, in pytree order; the first ``n_runs``
    rows of each), the metric history so far and the next epoch to train, as an ``.npz``.
    Each leaf is copied to the host and streamed into the file one at a time, so that
    writing holds no second copy of the state in memory (a sweep of thousands of runs has a
    checkpoint of gigabytes). The checkpoint it replaces is kept as
    :func:`previous_checkpoint`, so that one damaged file costs at most one checkpoint's
    worth of training."""
    def entries():
        yield "next_epoch", np.asarray(next_epoch)
        yield "config_hash", np.asarray(config_hash)
        for i, leaf in enumerate(state_leaves):
            yield f"state_{i}", np.asarray(leaf)[:n_runs]  # the sweep's own runs: it may resume on other devices
        for name, values in history.items():
            yield f"metric_{name}", values

    def write(f: BinaryIO) -> None:
        with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, value in entries():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                    np.lib.format.write_array(entry, np.asarray(value), allow_pickle=False)

    write_atomic(path, write, previous=previous_checkpoint(path))


def checkpoint_size(state_leaves: list, history: dict[str, np.ndarray]) -> int:
    """Bytes of one checkpoint of these state leaves (shapes or arrays) and this history."""
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in [*state_leaves, *history.values()])


def load_checkpoint(path: Path, leaves: list, like_history: dict[str, np.ndarray], config_hash: str
                    ) -> tuple[list[np.ndarray], dict[str, np.ndarray], int]:
    """Restore what :func:`save_checkpoint` wrote: state leaves shaped like ``leaves`` (arrays
    or shape-dtype structs), a history shaped like ``like_history``. DamagedFile for an
    unreadable, incomplete or wrongly shaped file, and for a checkpoint of another
    configuration."""
    required = ("next_epoch", "config_hash", *(f"state_{i}" for i in range(len(leaves))),
                *(f"metric_{name}" for name in like_history))
    data = read_npz(path, required)
    if str(data["config_hash"]) != config_hash:
        # e.g. a sweep started by an earlier grokjax, whose configuration had fewer fields
        raise DamagedFile(f"{path} was written for another configuration or by another grokjax version "
                          f"(hash {data['config_hash']}, not {config_hash})")
    restored = [data[f"state_{i}"] for i in range(len(leaves))]
    for i, (old, new) in enumerate(zip(leaves, restored)):
        if old.shape != new.shape or old.dtype != new.dtype:
            raise DamagedFile(f"{path}: state leaf {i} is {new.dtype}{list(new.shape)}, expected {old.dtype}{list(old.shape)}")
    history = {name: data[f"metric_{name}"] for name in like_history}
    for name, values in history.items():
        if values.shape != like_history[name].shape:
            raise DamagedFile(f"{path}: {name} has shape {list(values.shape)}, expected {list(like_history[name].shape)}")
    next_epoch = int(data["next_epoch"]) if data["next_epoch"].shape == () else -1
    if not 0 <= next_epoch <= like_history["train_loss"].shape[1]:
        raise DamagedFile(f"{path}: next_epoch {data['next_epoch']} lies outside the sweep's epochs")
    return restored, history, next_epoch


def resume_checkpoint(path: Path, leaves: list, like_history: dict[str, np.ndarray], config_hash: str
                      ) -> tuple[list[np.ndarray], dict[str, np.ndarray], int]:
    """:func:`load_checkpoint` of ``path``, falling back (with a warning line) to the previous
    checkpoint when ``path`` is damaged; DamagedFile saying how to proceed when neither loads."""
    try:
        return load_checkpoint(path, leaves, like_history, config_hash)
    except DamagedFile as damaged:
        previous = previous_checkpoint(path)
        if not previous.exists():
            raise DamagedFile(f"{damaged}; there is no previous checkpoint to fall back to: delete {path.name} to "
                              "restart this sweep from its first epoch") from None
        print(f"warning: {damaged}; resuming from the previous checkpoint, {previous.name}", file=sys.stderr, flush=True)
        try:
            return load_checkpoint(previous, leaves, like_history, config_hash)
        except DamagedFile as also:
            raise DamagedFile(f"{damaged}; and {also}: delete both to restart this sweep from its first epoch") from None


def write_program_part(path: Path, coordinates: dict, metrics: dict, fourier: dict, local_runs: np.ndarray,
                       programs: list[dict]) -> None:
    """One finished program of a plan with several, kept until the plan's results are written."""
    buffer = io.BytesIO()
    arrays = {**{f"coordinate_{k}": v for k, v in coordinates.items()}, **{f"metric_{k}": v for k, v in metrics.items()},
              **{f"fourier_{k}": v for k, v in fourier.items()}}
    np.savez(buffer, local_runs=local_runs, programs=json.dumps(programs), **arrays)
    write_atomic(path, buffer.getvalue())


def read_program_part(path: Path, metric_names: tuple[str, ...]) -> tuple[dict, dict, dict, np.ndarray, list[dict]]:
    """What :func:`write_program_part` wrote: coordinates, metrics, Fourier snapshots, local
    runs, program record; DamagedFile when it is unreadable or lacks one of ``metric_names``."""
    data = read_npz(path, ("local_runs", "programs", "coordinate_seed", *(f"metric_{name}" for name in metric_names)))
    part = {prefix: {name[len(prefix):]: data[name] for name in data if name.startswith(prefix)}
            for prefix in ("coordinate_", "metric_", "fourier_")}
    n_runs = len(data["local_runs"])
    for prefix, arrays in part.items():
        for name, values in arrays.items():
            check_shape(path, prefix + name, values, (n_runs,))
    try:
        programs = json.loads(str(data["programs"]))
    except json.JSONDecodeError:
        raise DamagedFile(f"{path}: its program record is not valid JSON") from None
    return part["coordinate_"], part["metric_"], part["fourier_"], data["local_runs"], programs


def partial_files(folder: Path) -> list[Path]:
    """What a sweep keeps only while it runs: checkpoints and finished programs' parts. A
    folder that holds any has a sweep that has not finished (``--resume`` continues it)."""
    return [*Path(folder).glob("checkpoint*.npz"), *Path(folder).glob("program-*.npz")]


def remove_partial_files(folder: Path) -> None:
    """Delete the :func:`partial_files` of a sweep whose results are complete."""
    for path in partial_files(folder):
        path.unlink(missing_ok=True)


def write_process_shard(folder: Path, process: int, local_runs: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
    """One process's part of a multi-process sweep: its run indices and their metric rows."""
    buffer = io.BytesIO()
    np.savez(buffer, runs=np.flatnonzero(local_runs), **{name: values[local_runs] for name, values in metrics.items()})
    write_atomic(folder / f"shard-{process}.npz", buffer.getvalue())


def merge_process_shards(folder: Path, n_processes: int, like: dict[str, np.ndarray], timeout: float = 3600.0) -> dict[str, np.ndarray]:
    """Wait for every process's shard, assemble the full metric arrays (shaped like ``like``)
    and remove the shard files."""
    paths = [folder / f"shard-{process}.npz" for process in range(n_processes)]
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        if time.monotonic() > deadline:
            missing = [path.name for path in paths if not path.exists()]
            raise TimeoutError(f"{folder}: no result from {', '.join(missing)} after {timeout:.0f} s")
        time.sleep(1.0)
    merged = {name: np.full_like(values, np.nan) for name, values in like.items()}
    for path in paths:
        shard = read_npz(path, ("runs", *merged))
        for name in merged:
            check_shape(path, name, shard[name], (len(shard["runs"]),) + merged[name].shape[1:])
            merged[name][shard["runs"]] = shard[name]
    for path in paths:
        path.unlink()
    return merged
