"""Sweep configuration: one frozen, validated dataclass.

Fields fall into two groups, and the split decides what recompiles:

* static (the network, its loss, shapes and counts: ``task``, ``m``, ``op``, parity's
  ``n_bits``, ``parity_k`` and ``n_samples``, ``model``,
  ``activation``, ``loss``, ``hidden``, the transformer's ``layers``, ``d_model``,
  ``heads``, ``d_mlp``, ``layernorm``, ``min_train_frac``, ``batch_size``, ``epochs``,
  ``optimizer``, Adam's ``beta1``/``beta2``, ``warmup_steps``, ``grokfast``,
  ``grokfast_window``, ``fourier_every``, ``geometry_every``, ``eval_every``,
  ``chunk_epochs``, ``run_group``, ``dtype``) are baked into the compiled program;
  changing one compiles a new program;
* the grid (``seeds``, ``data_seeds``, ``train_fracs``, ``label_noises``, ``init_scales``,
  ``grokfast_alphas``, ``grokfast_lambdas``, ``wds``, ``lrs``) becomes per-run traced
  arrays (:class:`grokjax.train.Hparams`); any values of the same count reuse the compiled
  program (the training fractions also size its arrays).

A :class:`SweepPlan` is what a user asks for: the static fields in :data:`STATIC_AXES` may
take several values, and the plan holds one SweepConfig, one compiled program, per
combination.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

TASKS = ("arithmetic", "parity")  # (a op b) on token pairs, or sparse parity on bit vectors
S5_OPS = ("s5", "s5conj", "s5aba")  # composition in the permutation group S5: m = 120
OPS = ("add", "sub", "mul", "mul_nz", "div", "x2xyy2", *S5_OPS)
NONZERO_B_OPS = ("mul_nz", "div")  # b = 0 left out: m(m - 1) pairs
MODELS = ("modularnet", "li2", "mlp", "transformer")
ACTIVATIONS = ("relu", "square", "silu", "gelu")
# the transformer's layout: Nanda et al.'s, or Lee et al.'s grokfast decoder (see grokjax.model.Transformer)
TRANSFORMER_STYLES = ("nanda", "grokfast")
LOSSES = ("ce", "ce_log1p", "stablemax", "mse")
# the precision of the loss (and of the softmax whose collapse is measured); "auto": the
# model's, and float64 for StableMax, as Prieto et al. compute it
LOGIT_DTYPES = ("auto", "float16", "bfloat16", "float32", "float64")
OPTIMIZERS = ("adam", "adamw", "sgd", "muon")
GRADIENT_FILTERS = ("none", "ema", "ma")  # grokfast: none, exponential or windowed moving average
DTYPES = ("float32", "float64")
FILTER_AXES = ("grokfast_alphas", "grokfast_lambdas")  # the gradient filter's traced settings


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


def is_prime(n: int) -> bool:
    return n >= 2 and all(n % k for k in range(2, math.isqrt(n) + 1))


@dataclass(frozen=True)
class SweepConfig:
    """One compiled program: its static fields and the traced grid it vmaps (see the module)."""

    # --- static: shapes and counts ---
    task: str = "arithmetic"  # "arithmetic": a op b on token pairs (m, op); "parity": sparse parity (n_bits, parity_k, n_samples)
    m: int = 97
    op: str = "add"
    n_bits: int = 40  # parity: bits per input
    parity_k: int = 3  # parity: the label is the parity of this many secret bits
    n_samples: int = 2000  # parity: inputs drawn (train and test together)
    # the study's network (learned embeddings, biases); "li2": one-hot inputs, one hidden layer, no biases;
    # "mlp": the same with `layers` hidden layers (Prieto et al.'s); or "transformer"
    model: str = "modularnet"
    activation: str = "relu"  # hidden activation: relu, square (x^2), silu or gelu (the transformer's MLP: relu or gelu)
    # cross-entropy as PyTorch computes it, "ce_log1p" (the same, precise below float32's epsilon),
    # "stablemax" (Prieto et al.'s StableMax cross-entropy), or "mse": squared error of
    # class-centred outputs against one-hot - 1/m
    loss: str = "ce"
    logit_dtype: str = "auto"  # the loss's precision (see LOGIT_DTYPES)
    hidden: int = 128  # modularnet/li2/mlp hidden width
    layers: int = 1  # transformer: blocks (attention + MLP); mlp: hidden layers
    d_model: int = 128  # transformer: residual stream width
    heads: int = 4  # transformer: attention heads (d_model / heads each)
    d_mlp: int = 512  # transformer: MLP hidden width
    layernorm: bool = False  # transformer: LayerNorm before attention, MLP and unembedding
    transformer_style: str = "nanda"  # transformer: "nanda", or "grokfast" (Lee et al.'s decoder; see TRANSFORMER_STYLES)
    min_train_frac: float | None = None  # Python API, full batch: runs may carry sizes down to this fraction (None: min(train_fracs))
    batch_size: int = 128  # 0 means full batch
    epochs: int = 600
    optimizer: str = "adam"
    beta1: float = 0.9  # Adam's/AdamW's moment decays (PyTorch's defaults; Nanda and Power use beta2 0.98)
    beta2: float = 0.999
    adam_eps: float = 1e-8  # Adam's epsilon (PyTorch's default; Prieto et al. use 1e-25)
    muon_adam_lr: float | None = None  # muon: the learning rate of its AdamW part (None: the run's lr, as Muon's matrices)
    warmup_steps: int = 0  # the learning rate rises linearly over this many optimizer steps (0: none)
    zero_output_init: bool = False  # the output layer starts at 0: the initial output is 0 at any init scale (Lyu et al.)
    ortho_grad: bool = False  # Prieto et al.'s ⊥Grad before the optimizer: each gradient without its part along its parameter
    grokfast: str = "none"  # gradient filter before the optimizer: none, ema or ma (Lee et al.'s grokfast)
    grokfast_window: int = 100  # ma: gradients averaged (sizes the filter's buffer)
    fourier_every: int = 0  # Fourier feature snapshot every N epochs (0: none)
    geometry_every: int = 1  # measure the hidden layer's geometry metrics every N epochs (0: never; NaN between)
    eval_every: int = 1  # measure test loss and accuracy every N epochs (and at the last; NaN between)
    chunk_epochs: int = 50  # epochs per compiled call; the progress bar moves once per chunk
    run_group: int = 0  # vmap this many runs at a time, looping over groups (0: all at once); helps CPUs keep the batch in cache
    dtype: str = "float32"  # parameters and arithmetic; float64 needs jax_enable_x64
    # --- grid: traced per run (runs: seeds x data_seeds x train_fracs x wds x lrs, lr fastest) ---
    seeds: tuple[int, ...] = (0, 1, 2)
    data_seeds: tuple[int, ...] | None = None  # None: each run's seed also fixes its split
    train_fracs: tuple[float, ...] = (0.5,)  # each run trains on the first int(frac * pairs) of its permutation
    # the fraction of each run's training labels replaced by a uniformly random wrong label (Doshi et al.'s
    # corrupted labels; chosen by the data seed; the test set is never corrupted)
    label_noises: tuple[float, ...] = (0.0,)
    wds: tuple[float, ...] = (0.0, 1e-4, 3e-4, 1e-3)
    lrs: tuple[float, ...] = (1e-3,)
    init_scales: tuple[float, ...] = (1.0,)  # every initial parameter multiplied by this (Omnigrok's alpha)
    grokfast_alphas: tuple[float, ...] = (0.98,)  # ema: h <- alpha h + (1 - alpha) g
    grokfast_lambdas: tuple[float, ...] = (2.0,)  # the filtered gradient is g + lambda h

    def __post_init__(self):
        for check in (self._check_task, self._check_model, self._check_schedule, self._check_grid, self._check_sizes):
            check()
        # one spelling per value, so that equal configurations hash equally (0 and 0.0)
        for name in ("wds", "lrs", "train_fracs", "label_noises", *FILTER_AXES, "init_scales"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        for name in ("beta1", "beta2", "adam_eps"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("min_train_frac", "muon_adam_lr"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, float(getattr(self, name)))

    def _check_task(self):
        _check_choice("task", self.task, TASKS)
        if self.task == "parity":
            self._check_parity()
        _check_int("m", self.m, minimum=2)
        _check_choice("op", self.op, OPS)
        if self.op == "div" and not is_prime(self.m):
            raise ConfigError(f"op 'div' needs a prime m (every b != 0 invertible), got m={self.m}")
        if self.op in S5_OPS and self.m != 120:
            raise ConfigError(f"op {self.op!r} acts on the 120 permutations of 5 elements: give m 120, got m={self.m}")

    def _check_parity(self):
        for name, minimum in (("n_bits", 1), ("parity_k", 1), ("n_samples", 2)):
            _check_int(name, getattr(self, name), minimum)
        if self.parity_k > self.n_bits:
            raise ConfigError(f"parity_k {self.parity_k} secret bits cannot be drawn from n_bits {self.n_bits}")
        if self.n_samples > 2**self.n_bits:
            raise ConfigError(f"n_samples {self.n_samples} exceeds the {2**self.n_bits} distinct inputs of n_bits "
                              f"{self.n_bits}")
        if self.op != "add":
            raise ConfigError(f"op {self.op!r} belongs to the arithmetic task; the parity task has none")
        if self.model != "mlp":
            raise ConfigError(f"the parity task trains an MLP on the bits: model mlp, got {self.model!r}")
        if self.fourier_every:
            raise ConfigError("fourier_every: the Fourier snapshots read token-pair networks; the parity task has none")

    def _check_model(self):
        for name, choices in (("model", MODELS), ("activation", ACTIVATIONS), ("loss", LOSSES),
                              ("optimizer", OPTIMIZERS), ("grokfast", GRADIENT_FILTERS), ("dtype", DTYPES),
                              ("logit_dtype", LOGIT_DTYPES), ("transformer_style", TRANSFORMER_STYLES)):
            _check_choice(name, getattr(self, name), choices)
        for name in ("hidden", "layers", "d_model", "heads", "d_mlp", "grokfast_window"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.d_model % self.heads:
            raise ConfigError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        for name in ("layernorm", "ortho_grad", "zero_output_init"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("beta1", "beta2"):
            _check_number(name, getattr(self, name))
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must lie in [0, 1), got {getattr(self, name)!r}")
        if self.muon_adam_lr is not None:
            _check_number("muon_adam_lr", self.muon_adam_lr)
            if not self.muon_adam_lr > 0:
                raise ConfigError(f"muon_adam_lr must be positive, got {self.muon_adam_lr!r}")
        _check_number("adam_eps", self.adam_eps)
        if not self.adam_eps > 0:
            raise ConfigError(f"adam_eps must be positive, got {self.adam_eps!r}")
        if self.model == "transformer" and (self.activation not in ("relu", "gelu") or self.loss == "mse"):
            raise ConfigError("the transformer has a ReLU or GELU MLP and trains on cross-entropy: activation relu or gelu, "
                              "loss ce, ce_log1p or stablemax")
        grokfast_decoder = self.model == "transformer" and self.transformer_style == "grokfast"  # other models ignore the style
        if grokfast_decoder and not self.layernorm:
            raise ConfigError("transformer_style grokfast: Lee et al.'s decoder always has its LayerNorms; give layernorm true")
        if grokfast_decoder and self.fourier_every:
            raise ConfigError("fourier_every: the progress measures read Nanda et al.'s token layout; transformer_style "
                              "grokfast has an operation token and two extra output classes")

    def _check_schedule(self):
        for name, minimum in (("epochs", 1), ("chunk_epochs", 1), ("run_group", 0), ("batch_size", 0),
                              ("fourier_every", 0), ("geometry_every", 0), ("eval_every", 1), ("warmup_steps", 0)):
            _check_int(name, getattr(self, name), minimum)
        if self.fourier_every > self.chunk_epochs and self.snapshot_chunk < self.chunk_epochs / 2:
            raise ConfigError(
                f"fourier_every {self.fourier_every} would cut training into {self.snapshot_chunk}-epoch chunks "
                f"(snapshots fall on chunk ends; chunk_epochs is {self.chunk_epochs}): choose a fourier_every with a "
                f"divisor between {-(-self.chunk_epochs // 2)} and {self.chunk_epochs}, or at most {self.chunk_epochs}"
            )

    def _check_grid(self):
        lists = ("seeds", "train_fracs", "label_noises", "wds", "lrs", "init_scales", *FILTER_AXES)
        for name in lists + (("data_seeds",) if self.data_seeds is not None else ()):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not values:
                raise ConfigError(f"{name} must be a non-empty tuple, got {values!r}")
            check_distinct(name, values)
        for name in ("seeds", "data_seeds"):
            for seed in getattr(self, name) or ():
                _check_int(name, seed, minimum=0)
        for name in ("train_fracs", "label_noises", "wds", "lrs", "init_scales", *FILTER_AXES):
            for value in getattr(self, name):
                _check_number(name, value)
        for frac in self.train_fracs:
            if not 0 < frac < 1:
                raise ConfigError(f"train_fracs must lie strictly between 0 and 1, got {frac!r}")
        for noise in self.label_noises:
            if not 0 <= noise < 1:
                raise ConfigError(f"label_noises must lie in [0, 1), got {noise!r}")
        for name in ("wds", "lrs"):
            if any(value < 0 for value in getattr(self, name)):
                raise ConfigError(f"{name} must be non-negative, got {min(getattr(self, name))!r}")
        if any(lr == 0 for lr in self.lrs):
            raise ConfigError("lrs must be positive: a learning rate of 0 trains nothing")
        if any(scale <= 0 for scale in self.init_scales):
            raise ConfigError(f"init_scales must be positive, got {min(self.init_scales)!r}")
        self._check_filter()

    def _check_filter(self):
        if any(not 0 <= alpha < 1 for alpha in self.grokfast_alphas):
            raise ConfigError(f"grokfast_alphas must lie in [0, 1), got {', '.join(map(str, self.grokfast_alphas))}")
        if any(lam < 0 for lam in self.grokfast_lambdas):
            raise ConfigError(f"grokfast_lambdas must be non-negative, got {min(self.grokfast_lambdas)!r}")
        # a filter's settings without the filter, or alpha with the windowed one, would multiply runs for nothing
        unused = {"none": FILTER_AXES, "ema": (), "ma": ("grokfast_alphas",)}[self.grokfast]
        for name in unused:
            if len(getattr(self, name)) > 1:
                raise ConfigError(f"{name} lists several values, but grokfast {self.grokfast} does not use them")

    def _check_sizes(self):
        sizes = [int(frac * self.n_pairs) for frac in self.train_fracs]
        for frac, n_train in zip(self.train_fracs, sizes):
            if n_train < 1 or self.n_pairs - n_train < 1:
                raise ConfigError(f"train_frac {frac} of {self.n_pairs} pairs leaves {n_train} train and "
                                  f"{self.n_pairs - n_train} test pairs; both must be non-empty")
        if len(set(sizes)) < len(sizes):
            raise ConfigError(f"train_fracs {', '.join(map(str, self.train_fracs))} give the training-set sizes "
                              f"{', '.join(map(str, sizes))} of {self.n_pairs} pairs: some twice")
        if self.min_train_frac is not None:
            _check_number("min_train_frac", self.min_train_frac)
            if not 0 < self.min_train_frac <= min(self.train_fracs):
                raise ConfigError(f"min_train_frac must lie in (0, min(train_fracs)={min(self.train_fracs)}], "
                                  f"got {self.min_train_frac!r}")
            if int(self.min_train_frac * self.n_pairs) < 1:
                raise ConfigError(f"min_train_frac {self.min_train_frac} of {self.n_pairs} pairs leaves no training pair")
            if self.n_train_min < self.train_sizes[0] and self.batch_size != 0:
                raise ConfigError("per-run training-set sizes below the listed train_fracs (min_train_frac) need "
                                  "full batch (batch_size 0)")
        if self.batch_size > self.train_sizes[0]:
            raise ConfigError(
                f"batch_size {self.batch_size} exceeds the {self.train_sizes[0]} training pairs of train_frac "
                f"{min(self.train_fracs)}; use batch_size 0 for full batch"
            )

    # --- derived sizes ---
    @property
    def n_pairs(self) -> int:
        """Number of examples of the task: (a, b) pairs, all m*m, or m*(m-1) for div (b = 0
        excluded); the parity task's ``n_samples``."""
        if self.task == "parity":
            return self.n_samples
        return self.m * (self.m - 1) if self.op in NONZERO_B_OPS else self.m * self.m

    @property
    def n_classes(self) -> int:
        """Classes the network tells apart: the m residues, or parity's 2."""
        return 2 if self.task == "parity" else self.m

    @property
    def train_sizes(self) -> tuple[int, ...]:
        """The training-set sizes of ``train_fracs``, ascending: int(frac * n_pairs) each."""
        return tuple(sorted(int(frac * self.n_pairs) for frac in self.train_fracs))

    @property
    def n_train(self) -> int:
        """Size of the train arrays: the largest training set; runs with a smaller one mask the rest."""
        return self.train_sizes[-1]

    @property
    def n_train_min(self) -> int:
        """The smallest training set a run of this program may have."""
        if self.min_train_frac is None:
            return self.train_sizes[0]
        return min(self.train_sizes[0], int(self.min_train_frac * self.n_pairs))

    @property
    def n_test(self) -> int:
        """Size of the test arrays: the pairs outside the smallest training set (a run with a
        larger training set masks the pairs it trains on)."""
        return self.n_pairs - self.n_train_min

    @property
    def masked_sizes(self) -> bool:
        """Whether runs of this program may differ in training-set size (masks needed)."""
        return self.n_train_min < self.n_train

    @property
    def snapshot_chunk(self) -> int:
        """Longest chunk whose ends fall on every ``fourier_every``-th epoch: the largest
        divisor of ``fourier_every`` not above ``chunk_epochs``."""
        every = self.fourier_every or self.chunk_epochs
        return max(d for d in range(1, min(self.chunk_epochs, every) + 1) if every % d == 0)

    @property
    def loss_dtype(self) -> str:
        """The precision the loss is computed in: ``logit_dtype``, or for "auto" the model's
        (float64 for StableMax, as its authors compute it)."""
        if self.logit_dtype != "auto":
            return self.logit_dtype
        return "float64" if self.loss == "stablemax" else self.dtype

    @property
    def softmax_dtype(self) -> str:
        """The precision of the softmax whose collapse is measured: ``logit_dtype``, or the model's."""
        return self.dtype if self.logit_dtype == "auto" else self.logit_dtype

    @property
    def effective_batch(self) -> int:
        """Examples per optimizer step: the batch size, or the largest training set in full batch."""
        return self.n_train if self.batch_size == 0 else self.batch_size

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch of the largest training set (a smaller one skips the rest)."""
        return -(-self.n_train // self.effective_batch)

    @property
    def n_runs(self) -> int:
        """Runs the program trains: the product of the grid's lengths."""
        n_data_seeds = 1 if self.data_seeds is None else len(self.data_seeds)
        per_seed = [len(getattr(self, name)) for name in ("train_fracs", "label_noises", "init_scales", *FILTER_AXES, "wds",
                                                          "lrs")]
        return len(self.seeds) * n_data_seeds * math.prod(per_seed)

    def to_dict(self) -> dict:
        """The fields as a plain mapping, as config.json records them."""
        return dataclasses.asdict(self)


def check_distinct(name: str, values) -> None:
    """Refuse a list that names a value twice (it would train the same runs twice)."""
    seen = set()
    for value in values:
        if value in seen:
            raise ConfigError(f"{name} lists {value!r} twice")
        seen.add(value)


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


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
    # the study's whole experiment: hidden 32/64/128 x lr 1e-3/5e-4 x wd 0/1e-4 for 1000 epochs
    # (three programs, one per hidden width), seed 0 unless --seeds says otherwise
    "study-grid": dict(hidden=(32, 64, 128), lrs=(1e-3, 5e-4), wds=(0.0, 1e-4), epochs=1000, seeds=(0,)),
    # the network Tian's Li2 paper analyses (arXiv 2509.21519): fixed one-hot inputs, W 2m->K and
    # V K->m without biases, x^2 activation, centred MSE, full-batch Adam; m 23 so that it runs
    # in minutes on a CPU, with wd 0 beside the paper's 1e-4 to show that only decay generalises
    "li2": dict(model="li2", activation="square", loss="mse", m=23, hidden=512, batch_size=0, epochs=3000,
                lrs=(1e-3,), wds=(0.0, 1e-4), fourier_every=100),
    # Prieto et al.'s main setting ("Grokking at the edge of numerical stability", arXiv 2501.04697,
    # their run script): a + b mod 113, 40% of the pairs, full batch, an MLP on the two one-hot
    # operands with two hidden layers of 200, ReLU, no biases, PyTorch's default initialisation,
    # cross-entropy in float32, AdamW with betas 0.9/0.99, eps 1e-25 and no weight decay; their figures use
    # lr 0.01 (StableMax, float64 softmax, ⊥AdamW) and 5e-4 (the precision comparison)
    "prieto": dict(model="mlp", layers=2, hidden=200, activation="relu", loss="ce", m=113, train_fracs=(0.4,),
                   batch_size=0, optimizer="adamw", beta2=0.99, adam_eps=1e-25, lrs=(1e-2,), wds=(0.0,), epochs=3000,
                   chunk_epochs=100),
    # Nanda et al.'s one-layer transformer on a + b mod 113 (arXiv 2301.05217): 30% of the pairs,
    # full batch, AdamW lr 1e-3, wd 1, betas 0.9/0.98, d_model 128, 4 heads, d_mlp 512, no
    # LayerNorm; their loss is computed in float64, ours in the log1p form, which keeps a tiny
    # loss from rounding to 0 in float32; 15000 epochs cover their cleanup phase (to about
    # 14k); test loss, geometry and the progress measures every 100 epochs
    "nanda": dict(model="transformer", loss="ce_log1p", m=113, train_fracs=(0.3,), batch_size=0, optimizer="adamw",
                  lrs=(1e-3,), wds=(1.0,), beta2=0.98, layers=1, d_model=128, heads=4, d_mlp=512, layernorm=False, epochs=15000,
                  eval_every=100, geometry_every=100, fourier_every=100, chunk_epochs=100),
    # Power et al.'s two-layer transformer on x / y mod 97 (arXiv 2201.02177): 50% of the pairs,
    # minibatches of 512 (min(512, half the training set)), AdamW lr 1e-3, wd 1, betas 0.9/0.98,
    # linear warm-up over the first 10 steps, d_model 128, 4 heads; d_mlp 512 and pre-LN
    # LayerNorm are grokjax's choices (the paper names neither); 10000 epochs are their 1e5 steps
    "power": dict(model="transformer", loss="ce_log1p", op="div", m=97, train_fracs=(0.5,), batch_size=512,
                  optimizer="adamw", lrs=(1e-3,), wds=(1.0,), beta2=0.98, warmup_steps=10, layers=2, d_model=128, heads=4, d_mlp=512,
                  layernorm=True, epochs=10000, eval_every=100, geometry_every=100, fourier_every=100, chunk_epochs=100),
    # Lee et al.'s grokfast setting (arXiv 2405.20233; their main.py): a 2-layer decoder (their style, GELU,
    # d_mlp 4 d_model) on x * y mod 97 for y != 0 (their code's task; a docstring there says x / y), half the
    # 9312 pairs for training, minibatches of 512 (10 steps an epoch, the last of 48), torch.optim.Adam
    # (coupled L2) lr 1e-3, betas 0.9/0.98, a 10-step warm-up, no weight decay; 30000 epochs are their 3e5 steps
    "grokfast": dict(model="transformer", transformer_style="grokfast", activation="gelu", layernorm=True, loss="ce",
                     op="mul_nz", m=97, train_fracs=(0.5,), batch_size=512, optimizer="adam", lrs=(1e-3,), wds=(0.0,),
                     beta2=0.98, warmup_steps=10, layers=2, d_model=128, heads=4, d_mlp=512, epochs=30000,
                     eval_every=1, geometry_every=100, chunk_epochs=100),
    # Nanda's transformer made small enough to grok on a 2-core CPU in minutes: a + b mod 59,
    # half the pairs, otherwise the nanda preset
    "transformer-cpu": dict(model="transformer", loss="ce_log1p", m=59, train_fracs=(0.5,), batch_size=0,
                            optimizer="adamw", lrs=(1e-3,), wds=(1.0,), beta2=0.98, layers=1, d_model=128, heads=4, d_mlp=512,
                            layernorm=False, epochs=4000, eval_every=10, geometry_every=50, fourier_every=50,
                            chunk_epochs=50),
}

# The fields that shape each model's network (the others are ignored by it).
NETWORK_FIELDS = {"modularnet": ("activation", "loss", "hidden"), "li2": ("activation", "loss", "hidden"),
                  "mlp": ("activation", "loss", "hidden", "layers"),
                  "transformer": ("activation", "layers", "d_model", "heads", "d_mlp", "layernorm", "transformer_style")}

# Static fields that may take several values: one compiled program per combination, in this
# order (the last varies fastest).
STATIC_AXES = ("m", "op", "n_bits", "parity_k", "n_samples", "model", "activation", "loss", "logit_dtype", "hidden",
               "layers", "d_model", "heads", "d_mlp", "transformer_style", "batch_size", "optimizer", "grokfast", "grokfast_window")
# Grid fields (lists of traced per-run values) and the coordinate each gives a run, in the
# grid's order (the last varies fastest).
GRID_AXES = {"seeds": "seed", "data_seeds": "data_seed", "train_fracs": "train_frac", "label_noises": "label_noise",
             "init_scales": "init_scale",
             "grokfast_alphas": "grokfast_alpha", "grokfast_lambdas": "grokfast_lambda", "wds": "wd", "lrs": "lr"}
# Grid fields that are a coordinate of every run only when they list several values.
OPTIONAL_GRID_AXES = ("train_fracs", "data_seeds", "label_noises", "init_scales", "grokfast_alphas", "grokfast_lambdas")
# The command's flag names of the grid fields (wd for wds, ...; they are also the keys of
# earlier versions' config files), read as the field names wherever keys are read.
KEY_ALIASES = {axis: field for field, axis in GRID_AXES.items() if field != "seeds"}


@dataclass(frozen=True)
class SweepPlan:
    """A sweep as asked for: one ``SweepConfig`` (one compiled program) per combination
    of the values of the static axes that take several, trained one after another into one
    results folder. ``axes`` names those static fields, in :data:`STATIC_AXES` order."""

    programs: tuple[SweepConfig, ...]
    axes: tuple[str, ...] = ()

    @property
    def n_runs(self) -> int:
        """Runs over every program."""
        return sum(program.n_runs for program in self.programs)

    @property
    def epochs(self) -> int:
        """Epochs per run (the same in every program)."""
        return self.programs[0].epochs

    def program_label(self, index: int) -> str:
        """The values that set program ``index`` apart, e.g. ``hidden=64 optimizer=adamw``."""
        return " ".join(f"{name}={getattr(self.programs[index], name)}" for name in self.axes)

    def to_dict(self) -> dict:
        """The configuration as config files write it: a static axis lists its values."""
        record = self.programs[0].to_dict()
        for name in self.axes:
            record[name] = list(dict.fromkeys(getattr(program, name) for program in self.programs))
        return record


def varied_axes(config: dict) -> list[str]:
    """The coordinates that set a sweep's groups of seeds apart, from its configuration
    record: every static axis given several values, then each of ``train_frac``,
    ``data_seed``, ``label_noise``, ``init_scale``, ``grokfast_alpha``, ``grokfast_lambda`` when several are
    listed, then ``wd`` and ``lr`` (always)."""
    axes = [name for name in STATIC_AXES if isinstance(config.get(name), list)]
    for field in OPTIONAL_GRID_AXES:
        if isinstance(config.get(field), (list, tuple)) and len(config[field]) > 1:
            axes.append(GRID_AXES[field])
    return axes + ["wd", "lr"]


def sweep_plan_from_mapping(mapping: dict, source: str, base: dict | None = None) -> SweepPlan:
    """A SweepPlan from a plain mapping (a TOML file, a saved config.json, the flags): keys
    are the field names, plus ``preset`` (a name in PRESETS, applied under the other keys);
    ``seeds`` may be a count N (seeds 0..N-1) or a list; the other grid fields and every
    field of STATIC_AXES a list or one value. Missing keys come from ``base`` (a mapping,
    e.g. a saved configuration), then the defaults. Unknown keys, wrong types, empty lists
    and repeated values raise ConfigError naming the key and ``source``."""
    values = canonical_mapping(mapping, source)
    preset = values.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"{source}: preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        values = {**canonical_mapping(PRESETS[preset], source), **values}
    values = {**canonical_mapping(base or {}, source), **values}
    static = {}
    for name in STATIC_AXES:
        if isinstance(values.get(name), tuple):
            options = values.pop(name)
            if not options:
                raise ConfigError(f"{source}: {name} is an empty list")
            try:
                check_distinct(name, options)
            except ConfigError as error:
                raise ConfigError(f"{source}: {error}") from None
            static[name] = options
    programs = []
    for combination in itertools.product(*static.values()):
        chosen = dict(zip(static, combination))
        try:
            programs.append(dataclasses.replace(SweepConfig(), **values, **chosen))
        except ConfigError as error:
            where = "".join(f", {name} {value}" for name, value in chosen.items() if len(static[name]) > 1)
            raise ConfigError(f"{source}{where}: {error}") from None
    return SweepPlan(tuple(programs), tuple(name for name in static if len(static[name]) > 1))


def read_config_file(path: str | Path) -> dict:
    """The settings of a TOML config file, by their field names (see :func:`field_names`)."""
    try:
        with open(path, "rb") as f:
            return field_names(tomllib.load(f), str(path))
    except OSError as error:
        raise ConfigError(f"cannot read --config {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None


def field_names(mapping: dict, source: str) -> dict:
    """``mapping`` with the flags' names of the grid fields (``wd``, ``lr``, ``train_frac``, ...)
    as the field names (``wds``, ...); ConfigError when two keys name one field."""
    values, named = {}, {}
    for key, value in mapping.items():
        field = KEY_ALIASES.get(key, key)
        if field in values:
            raise ConfigError(f"{source}: {named[field]} and {key} are one setting ({field}); give it once")
        values[field], named[field] = value, key
    return values


def grid_plan(mapping: dict, source: str, base: dict | None = None) -> SweepPlan:
    """:func:`sweep_plan_from_mapping` for a sweep whose runs are its grid, as the command
    and :func:`grokjax.run` train: ``min_train_frac`` (per-run training-set sizes, which
    only :func:`grokjax.train.chosen_runs_hparams` gives) is refused."""
    if {**(base or {}), **field_names(mapping, source)}.get("min_train_frac") is not None:
        raise ConfigError(f"{source}: min_train_frac sizes arrays for runs with their own training-set sizes (run_sweep "
                          "with chosen_runs_hparams, as experiments/scaling_law.py does); every run of a grid trains on "
                          "one of train_fracs")
    return sweep_plan_from_mapping(mapping, source, base)


def canonical_mapping(mapping: dict, source: str) -> dict:
    """Field names as SweepConfig spells them (see :func:`field_names`) and list values as
    tuples (a count of seeds as the seeds 0..N-1); unknown keys refused."""
    fields = {f.name for f in dataclasses.fields(SweepConfig)}
    values = field_names(mapping, source)
    unknown = sorted(set(values) - fields - {"preset"})
    if unknown:
        known = ", ".join(sorted(fields | {"preset"} | set(KEY_ALIASES)))
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {known}")
    seeds = values.get("seeds")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"{source}: seeds must be >= 1, got {seeds}")
        values["seeds"] = tuple(range(seeds))
    for name in GRID_AXES:
        value = values.get(name)
        if value is None or isinstance(value, tuple):
            continue
        if isinstance(value, list):
            values[name] = tuple(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and name != "seeds":
            values[name] = (value,)
        else:
            raise ConfigError(f"{source}: {name} must be a list, got {value!r}")
    for name in STATIC_AXES:
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    return values


def config_hash(config: SweepConfig | SweepPlan) -> str:
    """A short content hash of the configuration, recorded in config.json and checkpoints."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differing_fields(first: SweepConfig | SweepPlan, second: SweepConfig | SweepPlan) -> list[str]:
    a, b = first.to_dict(), second.to_dict()
    return [name for name in a if a[name] != b[name]]
