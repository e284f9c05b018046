"""Sweep configuration: one frozen, validated dataclass.

Fields fall into two groups, and the split decides what recompiles:

* static (the network, its loss, shapes and counts: ``m``, ``op``, ``model``,
  ``activation``, ``loss``, ``hidden``, ``train_frac``, ``min_train_frac``, ``batch_size``,
  ``epochs``, ``optimizer``, ``fourier_every``, ``geometry_every``, ``chunk_epochs``, ``run_group``, ``dtype``)
  are baked into the compiled program; changing one compiles a new program;
* the grid (``seeds``, ``wds``, ``lrs``, ``data_seed``) becomes per-run traced
  arrays (:class:`grokjax.train.Hparams`); any values of the same count reuse
  the compiled program.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

OPS = ("add", "sub", "mul", "div", "x2xyy2")
MODELS = ("modularnet", "li2")
ACTIVATIONS = ("relu", "square", "silu")
LOSSES = ("ce", "mse")
OPTIMIZERS = ("adam", "adamw", "sgd")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, math.isqrt(n) + 1))


@dataclass(frozen=True)
class SweepConfig:
    # --- static: shapes and counts ---
    m: int = 97
    op: str = "add"
    model: str = "modularnet"  # the study's network (learned embeddings, biases) or "li2": one-hot inputs, no biases
    activation: str = "relu"  # hidden activation: relu, square (x^2) or silu
    loss: str = "ce"  # cross-entropy, or "mse": squared error of class-centred outputs against one-hot - 1/m
    hidden: int = 128
    train_frac: float = 0.5  # the largest training fraction (every run's, unless runs carry their own)
    min_train_frac: float | None = None  # the smallest per-run fraction the program allows (None: train_frac)
    batch_size: int = 128  # 0 means full batch
    epochs: int = 600
    optimizer: str = "adam"
    fourier_every: int = 0  # Fourier feature snapshot every N epochs (0: none)
    geometry_every: int = 1  # measure the hidden layer's geometry metrics every N epochs (0: never; NaN between)
    chunk_epochs: int = 50  # epochs per compiled call; the progress bar moves once per chunk
    run_group: int = 0  # vmap this many runs at a time, looping over groups (0: all at once); helps CPUs keep the batch in cache
    dtype: str = "float32"  # parameters and arithmetic; float64 needs jax_enable_x64
    # --- grid: traced per run ---
    seeds: tuple[int, ...] = (0, 1, 2)
    wds: tuple[float, ...] = (0.0, 1e-4, 3e-4, 1e-3)
    lrs: tuple[float, ...] = (1e-3,)
    data_seed: int | None = None  # None: each run's seed also fixes its split

    def __post_init__(self):
        _check_int("m", self.m, minimum=2)
        if self.op not in OPS:
            raise ConfigError(f"op must be one of {', '.join(OPS)}, got {self.op!r}")
        if self.op == "div" and not is_prime(self.m):
            raise ConfigError(f"op 'div' needs a prime m (every b != 0 invertible), got m={self.m}")
        for name, choices in (("model", MODELS), ("activation", ACTIVATIONS), ("loss", LOSSES)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        _check_int("fourier_every", self.fourier_every, minimum=0)
        _check_int("geometry_every", self.geometry_every, minimum=0)
        if self.fourier_every > self.chunk_epochs and self.snapshot_chunk < self.chunk_epochs / 2:
            raise ConfigError(
                f"fourier_every {self.fourier_every} would cut training into {self.snapshot_chunk}-epoch chunks "
                f"(snapshots fall on chunk ends; chunk_epochs is {self.chunk_epochs}): choose a fourier_every with a "
                f"divisor between {-(-self.chunk_epochs // 2)} and {self.chunk_epochs}, or at most {self.chunk_epochs}"
            )
        _check_int("hidden", self.hidden, minimum=1)
        _check_int("epochs", self.epochs, minimum=1)
        _check_int("chunk_epochs", self.chunk_epochs, minimum=1)
        _check_int("run_group", self.run_group, minimum=0)
        _check_int("batch_size", self.batch_size, minimum=0)
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        _check_number("train_frac", self.train_frac)
        if not 0 < self.train_frac < 1:
            raise ConfigError(f"train_frac must lie strictly between 0 and 1, got {self.train_frac!r}")
        if self.n_train < 1 or self.n_pairs - self.n_train < 1:
            raise ConfigError(
                f"train_frac {self.train_frac} of {self.n_pairs} pairs leaves "
                f"{self.n_train} train and {self.n_pairs - self.n_train} test pairs; both must be non-empty"
            )
        if self.min_train_frac is not None:
            _check_number("min_train_frac", self.min_train_frac)
            if not 0 < self.min_train_frac <= self.train_frac:
                raise ConfigError(f"min_train_frac must lie in (0, train_frac={self.train_frac}], got {self.min_train_frac!r}")
            if self.n_train_min < 1:
                raise ConfigError(f"min_train_frac {self.min_train_frac} of {self.n_pairs} pairs leaves no training pair")
            if self.n_train_min < self.n_train and self.batch_size != 0:
                raise ConfigError("per-run training fractions (min_train_frac < train_frac) need full batch (batch_size 0)")
            object.__setattr__(self, "min_train_frac", float(self.min_train_frac))
        if self.batch_size > self.n_train:
            raise ConfigError(
                f"batch_size {self.batch_size} exceeds the {self.n_train} training pairs; "
                "use batch_size 0 for full batch"
            )
        for name in ("seeds", "wds", "lrs"):
            if not isinstance(getattr(self, name), tuple) or not getattr(self, name):
                raise ConfigError(f"{name} must be a non-empty tuple, got {getattr(self, name)!r}")
        for seed in self.seeds:
            _check_int("seeds", seed, minimum=0)
        if self.data_seed is not None:
            _check_int("data_seed", self.data_seed, minimum=0)
        for name, values in (("wds", self.wds), ("lrs", self.lrs)):
            for value in values:
                _check_number(name, value)
                if value < 0:
                    raise ConfigError(f"{name} must be non-negative, got {value!r}")
        if any(lr == 0 for lr in self.lrs):
            raise ConfigError("lrs must be positive: a learning rate of 0 trains nothing")
        # one spelling per value, so that equal configurations hash equally (0 and 0.0)
        for name in ("wds", "lrs"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "train_frac", float(self.train_frac))

    # --- derived sizes ---
    @property
    def n_pairs(self) -> int:
        """Number of (a, b) pairs: all m*m, or m*(m-1) for div (b = 0 excluded)."""
        return self.m * (self.m - 1) if self.op == "div" else self.m * self.m

    @property
    def n_train(self) -> int:
        """Training pairs at ``train_frac``: every run's, unless runs carry their own
        smaller sizes; then it is the size of the train arrays, which such runs mask."""
        return int(self.train_frac * self.n_pairs)

    @property
    def n_train_min(self) -> int:
        return self.n_train if self.min_train_frac is None else int(self.min_train_frac * self.n_pairs)

    @property
    def n_test(self) -> int:
        """Test pairs of a run with ``n_train`` training pairs; with ``min_train_frac``, the
        size of the test arrays: the pairs outside the smallest train set (a run with a
        larger train set masks the pairs it trains on)."""
        return self.n_pairs - self.n_train_min

    @property
    def snapshot_chunk(self) -> int:
        """Longest chunk whose ends fall on every ``fourier_every``-th epoch: the largest
        divisor of ``fourier_every`` not above ``chunk_epochs``."""
        every = self.fourier_every or self.chunk_epochs
        return max(d for d in range(1, min(self.chunk_epochs, every) + 1) if every % d == 0)

    @property
    def effective_batch(self) -> int:
        return self.n_train if self.batch_size == 0 else self.batch_size

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_train // self.effective_batch)

    @property
    def n_runs(self) -> int:
        return len(self.seeds) * len(self.wds) * len(self.lrs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_number(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


STAGE_RULES = ("events", "readme", "script")
STAGE3_EVENTS = ("w1_peak", "test_rise")


@dataclass(frozen=True)
class AnalysisConfig:
    """Thresholds for reading a sweep's metric arrays (see ``grokjax.analysis``)."""

    # memorisation and the study's grokking rule
    mem_threshold: float = 0.99  # train accuracy that counts as memorised
    grok_threshold: float = 0.95  # test accuracy that counts as generalised
    grok_min_index: int = 50  # earliest 0-based epoch index of a grokking crossing
    grok_window: int = 5  # epochs the test accuracy must hold above the threshold
    # Liu et al. phases
    phase_threshold: float = 0.9  # accuracy that counts as "fits" (train) / "generalises" (test)
    comprehension_gap: float = 0.01  # test may lag train by this fraction of the epoch budget
    # stage rules: "events" (the default shading), "readme" and "script" (the study's)
    stage_rules: str = "events"
    readme_delta_w1: float = 1e-3  # Stage I while w1_delta_norm < this
    readme_grad_cosine: float = 0.6  # Stage II needs grad_cosine_sim > this
    readme_grad_norm: float = 0.1  # Stage III needs grad_norm > this
    script_window: int = 10  # epochs in the trailing means
    script_delta_w1: float = 5e-3  # enter II when mean w1_delta_norm > this ...
    script_grad_cosine: float = 0.03  # ... and mean grad_cosine_sim > this
    stage3_event: str = "w1_peak"  # what starts Stage III under the "events" rules
    w1_peak_drop: float = 0.05  # a W1 peak counts once the norm falls this fraction below it
    test_rise_threshold: float = 0.05  # test accuracy that marks the onset of its rise
    # aggregates across seeds
    bootstrap_samples: int = 2000
    bootstrap_seed: int = 0

    def __post_init__(self):
        for name in ("mem_threshold", "grok_threshold", "phase_threshold", "test_rise_threshold"):
            _check_number(name, getattr(self, name))
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must lie in (0, 1], got {getattr(self, name)!r}")
        _check_int("grok_min_index", self.grok_min_index, minimum=0)
        _check_int("grok_window", self.grok_window, minimum=1)
        _check_int("script_window", self.script_window, minimum=1)
        _check_int("bootstrap_samples", self.bootstrap_samples, minimum=1)
        if self.stage_rules not in STAGE_RULES:
            raise ConfigError(f"stage_rules must be one of {', '.join(STAGE_RULES)}, got {self.stage_rules!r}")
        if self.stage3_event not in STAGE3_EVENTS:
            raise ConfigError(f"stage3_event must be one of {', '.join(STAGE3_EVENTS)}, got {self.stage3_event!r}")
        for name in ("comprehension_gap", "w1_peak_drop", "readme_delta_w1", "readme_grad_norm", "script_delta_w1"):
            _check_number(name, getattr(self, name))
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)!r}")


# Named sets of field values, applied under everything else the user gives.
PRESETS = {
    # the PyTorch study's setting: the defaults above
    "study": {},
    # the network Tian's Li2 paper analyses (arXiv 2509.21519): fixed one-hot inputs, W 2m->K and
    # V K->m without biases, x^2 activation, centred MSE, full-batch Adam; m 23 so that it runs
    # in minutes on a CPU, with wd 0 beside the paper's 1e-4 to show that only decay generalises
    "li2": dict(model="li2", activation="square", loss="mse", m=23, hidden=512, batch_size=0, epochs=3000,
                lrs=(1e-3,), wds=(0.0, 1e-4), fourier_every=100),
}


def sweep_config_from_mapping(mapping: dict, source: str, base: SweepConfig | None = None) -> SweepConfig:
    """A SweepConfig from a plain mapping (a TOML file, a saved config.json): keys are the
    field names, plus ``preset`` (a name in PRESETS, applied before the other keys);
    ``seeds`` may be a count N (seeds 0..N-1) or a list; ``wds`` and ``lrs`` a list or one
    number. Missing keys come from ``base`` (default: the defaults). Unknown keys and wrong
    types raise ConfigError naming the key and ``source``."""
    fields = {f.name for f in dataclasses.fields(SweepConfig)}
    unknown = sorted(set(mapping) - fields - {"preset"})
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(fields | {'preset'}))}")
    values = dict(mapping)
    preset = values.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"{source}: preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        values = {**PRESETS[preset], **values}
    if isinstance(values.get("seeds"), int) and not isinstance(values["seeds"], bool):
        if values["seeds"] < 1:
            raise ConfigError(f"{source}: seeds must be >= 1, got {values['seeds']}")
        values["seeds"] = tuple(range(values["seeds"]))
    for name in ("wds", "lrs"):
        if isinstance(values.get(name), (int, float)) and not isinstance(values[name], bool):
            values[name] = (values[name],)
    for name in ("seeds", "wds", "lrs"):
        if name in values:
            if not isinstance(values[name], (list, tuple)):
                raise ConfigError(f"{source}: {name} must be a list, got {values[name]!r}")
            values[name] = tuple(values[name])
    try:
        return dataclasses.replace(base or SweepConfig(), **values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def config_hash(config: SweepConfig) -> str:
    """A short content hash of the configuration, recorded in config.json and checkpoints."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differing_fields(first: SweepConfig, second: SweepConfig) -> list[str]:
    a, b = first.to_dict(), second.to_dict()
    return [name for name in a if a[name] != b[name]]


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit status 2), not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")
