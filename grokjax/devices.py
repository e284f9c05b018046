"""How many host devices a sweep on a CPU uses: one per core unless told otherwise.

XLA's CPU backend runs one program on about one core per device, so a single host device
leaves the other cores of a laptop idle. Split into one device per core, the sweep
spreads its runs over them (:func:`grokjax.driver.runs_mesh`) and trains them in parallel.
The split must be chosen before JAX starts (its first computation or device query).
"""

from __future__ import annotations

import os
import re

import jax

from grokjax.config import ConfigError

FORCED_DEVICE_COUNT = re.compile(r"--xla_force_host_platform_device_count=(\d+)")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the system reports one."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on macOS and Windows
        return os.cpu_count() or 1


def forced_device_count(xla_flags: str) -> int | None:
    """The count given by ``--xla_force_host_platform_device_count`` in these XLA flags."""
    forced = FORCED_DEVICE_COUNT.search(xla_flags)
    return int(forced.group(1)) if forced else None


def configured_cpu_devices() -> int | None:
    """A CPU device count already chosen for this process, by JAX's ``jax_num_cpu_devices``
    or in ``XLA_FLAGS``; None if neither."""
    if jax.config.jax_num_cpu_devices > 0:
        return jax.config.jax_num_cpu_devices
    return forced_device_count(os.environ.get("XLA_FLAGS", ""))


def use_cpu_devices(requested: int | None = None, runs: int | None = None) -> None:
    """Split the CPU into ``requested`` host devices, or by default into one per usable core
    but no more than ``runs`` (the runs of the largest program): a device without a run of
    its own would only train a padding copy.

    A count this process already configured (see :func:`configured_cpu_devices`) wins over
    the default, and so does a JAX that has started: a notebook or a test keeps the devices
    it has. An explicit ``requested`` count that JAX can no longer take is a ConfigError.
    GPUs are unaffected: they stay the default devices when there are any.

    With several host devices, each keeps to one core, and so does the LAPACK library
    behind the singular values (OpenBLAS, loaded at the first SVD; unless
    ``OPENBLAS_NUM_THREADS`` is set): its own threads would compete with the other devices."""
    if requested is not None and requested < 1:
        raise ConfigError(f"--cpu-devices must be >= 1, got {requested}")
    count = requested or configured_cpu_devices() or min(usable_cores(), runs or usable_cores())
    if count != jax.config.jax_num_cpu_devices:
        try:
            jax.config.update("jax_num_cpu_devices", count)
        except RuntimeError:  # JAX has started in this process; its CPU device count is fixed
            if requested is not None and len(jax.devices("cpu")) != requested:
                raise ConfigError(f"--cpu-devices {requested}: JAX has already started in this process with "
                                  f"{len(jax.devices('cpu'))} CPU device(s); choose the count before JAX's first use") from None
            return
    if count > 1:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
