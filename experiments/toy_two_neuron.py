"""Two hidden neurons learning two features: the three phases of Li2 in a toy.

Li2 (Tian, "Provable Scaling Laws of Feature Emergence from Learning Dynamics of
Grokking", arXiv 2509.21519) splits feature learning into (I) lazy learning: the output
layer fits the labels on near-random hidden features while the hidden weights barely
move; (II) independent feature learning: the gradient back-propagated to the hidden
layer carries label structure and each hidden neuron climbs towards a label-correlated
feature on its own; (III) interactive feature learning: once a feature is captured its
share of the residual vanishes, neurons that went for the same feature compete, and the
feedback pushes a neuron towards the feature nobody has yet.

The toy
-------
Inputs x ~ N(0, I_d); two orthonormal ground-truth directions u1, u2 (random per seed);
noise-free targets

    y = a1 (u1 . x)^2 + a2 (u2 . x)^2,      a1 > a2,

so that u1 is the feature both neurons head for first.  The model has the same form, one
hidden layer of two neurons with the square activation of Li2's analysis,

    y_hat = v1 (w1 . x)^2 + v2 (w2 . x)^2,

trained by full-batch gradient descent on 1/(2n) sum (y_hat - y)^2 + wd/2 (|W|^2 + |v|^2)
(weight decay on both layers, as in Li2).  Defaults: d = 30, n = 300 training and 2000
fresh test examples, a = (0.1, 0.05), lr 0.1, 20000 steps.

Design choices, and why:

* Lazy start.  Each w_j starts as a random vector of norm about ``init_scale`` (1) and v
  at 0, while the amplitudes a are small.  Random unit-norm features (w . x)^2 have mean
  |w|^2 = 1, much larger than the targets, so the output weights fit what they can (the
  labels' mean and their weak correlation with the random features) within about ten
  steps.  The gradient reaching w_j is proportional to v_j, which stays small, so the
  hidden weights then move slowly: a loss plateau with a nearly frozen hidden layer.
* No memorisation.  Two neurons are 2d + 2 = 62 parameters against n = 300 examples, so
  the model cannot interpolate: the lazy fit explains only part of the loss, and fitting
  the training set means finding u1 and u2 (the test loss on fresh samples shows it).
  Li2's Stage I memorises with a wide hidden layer and needs weight decay before the
  back-propagated gradient turns informative; two neurons cannot memorise, so here that
  role of weight decay is absent and Phase II starts without it.
* Square activation.  With sigma(z) = z^2 the model computes x^T B x with
  B = sum_j v_j w_j w_j^T, and on the population the descent direction for w_j is
  4 v_j (A - B) w_j plus a term along w_j itself (A = a1 u1 u1^T + a2 u2 u2^T): each
  neuron does a power iteration on what is left to fit.  Both neurons first see a residual dominated by u1 (Phase II);
  once one has captured u1, the residual's top direction is u2 (Phase III).  sigma is
  even, so w and -w are the same neuron: cosines are reported as absolute values.
* Weight decay selects the answer.  Without it every factorisation of A into two rank-one
  terms fits, including neurons that mix u1 and u2; with it the cheapest one is the
  eigendecomposition (the cost of a neuron carrying weight s is proportional to s^(2/3),
  concave, so splitting a feature between neurons costs more than giving it to one).  So
  weight decay is what pushes two neurons that share a feature apart and ends them on
  distinct true directions, and, when too large, what switches a neuron off.

Recorded every ``record_every`` steps, per run: |w_j - w_j(0)|, |cos(w_j, u_i)|,
|cos(w1, w2)|, |w_j|, v, |v|, training and test loss (data term only) and the fraction of
the back-propagated gradient on w_j (data term only) that lies in span(u1, u2).

Phase boundaries, per run, from the recorded curves (``phase_boundaries``):

* Phase II starts at the first recorded step where some |cos(w_j, u_i)| has risen by
  ``II_CLIMB`` above its initial value: a neuron has started to climb towards a feature;
* Phase III starts when the first feature is captured: some neuron has |cos(w_j, u_i)| at
  least ``CAPTURED`` and carries at least half of a_i (v_j |w_j|^2 >= a_i / 2).  From
  then on the residual along that feature is small and the neurons interact;
* Phase III ends when both features are captured, by different neurons.

Usage::

    python experiments/toy_two_neuron.py --out results/toy-two-neuron
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.cli import OneLineErrorParser, float_list
from grokjax.results import environment, write_atomic

II_CLIMB = 0.1  # Phase II: some |cos(w_j, u_i)| has risen this much above its initial value
CAPTURED = 0.9  # a neuron has captured u_i when |cos(w_j, u_i)| reaches this ...
CARRIES = 0.5  # ... and its weight v_j |w_j|^2 reaches this fraction of a_i
SWITCHED_OFF = 0.01  # a neuron whose weight v_j |w_j|^2 ends below this fraction of a2 is off
FOLLOWED = 0.5  # the other neuron "went for the same feature" if its |cos| with it reached this
TINY = 1e-12  # norms below this count as zero

OUTCOMES = ("specialised", "switched off", "unseparated")


@dataclass(frozen=True)
class ToyConfig:
    """Everything that defines one grid of runs; seeds and wds are traced, the rest is static."""

    dim: int = 30
    n_train: int = 300
    n_test: int = 2000
    amplitudes: tuple[float, float] = (0.1, 0.05)  # a1 (the stronger direction u1), a2
    init_scale: float = 1.0  # initial |w_j| is about this; v starts at 0
    lr: float = 0.1
    steps: int = 20000
    record_every: int = 20
    seeds: tuple[int, ...] = tuple(range(16))
    wds: tuple[float, ...] = (0.0, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)

    def __post_init__(self):
        for name in ("dim", "n_train", "n_test", "steps", "record_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dim < 2:
            raise ValueError(f"dim must be at least 2 (two orthogonal directions), got {self.dim}")
        if self.steps % self.record_every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of record_every ({self.record_every})")
        if len(self.amplitudes) != 2 or not all(0 < a < math.inf for a in self.amplitudes):
            raise ValueError(f"amplitudes must be two positive numbers, got {self.amplitudes!r}")
        for name in ("init_scale", "lr"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        if not self.seeds or any(not isinstance(s, int) or s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be a non-empty tuple of non-negative integers, got {self.seeds!r}")
        if not self.wds or any(not 0 <= wd < math.inf for wd in self.wds):
            raise ValueError(f"weight decays must be a non-empty tuple of non-negative numbers, got {self.wds!r}")


def recorded_steps(config: ToyConfig) -> np.ndarray:
    """The steps at which metrics are recorded: 0 and every ``record_every`` steps after."""
    return np.arange(0, config.steps + 1, config.record_every)


def split_seed(seed: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A run's data key and initialisation key, both from its seed."""
    k_data, k_init = jax.random.split(jax.random.PRNGKey(seed))
    return k_data, k_init


def true_directions(key: jax.Array, dim: int) -> jax.Array:
    """Two orthonormal directions in R^dim, as the rows of a [2, dim] array."""
    q, _ = jnp.linalg.qr(jax.random.normal(key, (dim, 2)))
    return q.T


def targets(x: jax.Array, directions: jax.Array, amplitudes: jax.Array) -> jax.Array:
    """y = sum_i a_i (u_i . x)^2 for each row of x."""
    return ((x @ directions.T) ** 2) @ amplitudes


def make_data(key: jax.Array, config: ToyConfig) -> dict[str, jax.Array]:
    """The true directions, a training set and a fresh test set drawn from the same law."""
    k_dir, k_train, k_test = jax.random.split(key, 3)
    directions = true_directions(k_dir, config.dim)
    amplitudes = jnp.asarray(config.amplitudes, jnp.float32)
    x_train = jax.random.normal(k_train, (config.n_train, config.dim))
    x_test = jax.random.normal(k_test, (config.n_test, config.dim))
    return {
        "directions": directions,
        "x_train": x_train,
        "y_train": targets(x_train, directions, amplitudes),
        "x_test": x_test,
        "y_test": targets(x_test, directions, amplitudes),
    }


def init_params(key: jax.Array, config: ToyConfig) -> dict[str, jax.Array]:
    """Hidden weights w [2, dim] with entries N(0, init_scale^2 / dim), output weights v = 0."""
    w = jax.random.normal(key, (2, config.dim)) * (config.init_scale / math.sqrt(config.dim))
    return {"w": w, "v": jnp.zeros(2)}


def predict(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """y_hat = v1 (w1 . x)^2 + v2 (w2 . x)^2 for each row of x."""
    return ((x @ params["w"].T) ** 2) @ params["v"]


def data_loss(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    """Half the mean squared error."""
    return 0.5 * jnp.mean((predict(params, x) - y) ** 2)


def objective(params: dict[str, jax.Array], x: jax.Array, y: jax.Array, wd: jax.Array) -> jax.Array:
    """The training objective: data loss plus wd/2 times the squared norm of all weights."""
    squared_norm = sum(jnp.sum(p**2) for p in jax.tree.leaves(params))
    return data_loss(params, x, y) + 0.5 * wd * squared_norm


def unit_rows(a: jax.Array) -> jax.Array:
    """Each row divided by its norm; rows shorter than ``TINY`` become 0 (a neuron that weight
    decay has switched off points nowhere, and float32 cannot normalise it reliably)."""
    norm = jnp.linalg.norm(a, axis=-1, keepdims=True)
    return jnp.where(norm > TINY, a / jnp.maximum(norm, TINY), 0.0)


def abs_cosine(a: jax.Array, b: jax.Array) -> jax.Array:
    """|cos| between every row of a [k, d] and every row of b [m, d]: [k, m]."""
    return jnp.abs(unit_rows(a) @ unit_rows(b).T)


def measure(params: dict[str, jax.Array], w0: jax.Array, data: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """The recorded quantities of one run at one step."""
    w, v = params["w"], params["v"]
    directions = data["directions"]
    # the gradient back-propagated to w, without the weight-decay term; the share of it in
    # span(u1, u2) tells label structure from noise (NaN where it is 0, as at step 0: v = 0)
    grad_w = jax.grad(data_loss)(params, data["x_train"], data["y_train"])["w"]
    grad_in_span = jnp.linalg.norm(grad_w @ directions.T, axis=1) / jnp.linalg.norm(grad_w, axis=1)
    return {
        "dw": jnp.linalg.norm(w - w0, axis=1),
        "cos": abs_cosine(w, directions),  # [neuron j, direction i]
        "cos12": abs_cosine(w[:1], w[1:])[0, 0],
        "w_norm": jnp.linalg.norm(w, axis=1),
        "v": v,
        "v_norm": jnp.linalg.norm(v),
        "train_loss": data_loss(params, data["x_train"], data["y_train"]),
        "test_loss": data_loss(params, data["x_test"], data["y_test"]),
        "grad_in_span": grad_in_span,
    }


def make_train(config: ToyConfig):
    """A pure function (seed, wd) -> (records, final params, initial w, true directions).

    The seed fixes the data (directions, training and test sets) and the initialisation;
    each leaf of records has a leading axis over ``recorded_steps(config)``.
    """
    n_blocks = config.steps // config.record_every

    def train(seed: jax.Array, wd: jax.Array):
        k_data, k_init = split_seed(seed)
        data = make_data(k_data, config)
        params = init_params(k_init, config)
        w0 = params["w"]

        def gd_step(params, _):
            grads = jax.grad(objective)(params, data["x_train"], data["y_train"], wd)
            return jax.tree.map(lambda p, g: p - config.lr * g, params, grads), None

        def gd_block(params, _):
            params, _ = jax.lax.scan(gd_step, params, None, length=config.record_every)
            return params, measure(params, w0, data)

        params_end, later = jax.lax.scan(gd_block, params, None, length=n_blocks)
        first = measure(params, w0, data)
        records = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, later)
        return records, params_end, w0, data["directions"]

    return train


def run_grid(config: ToyConfig) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every (seed, wd) run in one compiled, vmapped program, and the compile and run times.

    Arrays lead with the run axis, ordered seed-major (run r has seed seeds[r // len(wds)]
    and wd wds[r % len(wds)]); recorded metrics have the step axis second.
    """
    seeds, wds = np.meshgrid(np.asarray(config.seeds, np.int32), np.asarray(config.wds, np.float32), indexing="ij")
    seeds, wds = seeds.ravel(), wds.ravel()
    start = time.perf_counter()
    program = jax.jit(jax.vmap(make_train(config))).lower(seeds, wds).compile()
    compiled = time.perf_counter()
    records, params, w0, directions = jax.block_until_ready(program(seeds, wds))
    done = time.perf_counter()
    curves = {name: np.asarray(value) for name, value in records.items()}
    curves.update(seed=seeds, wd=wds, w_final=np.asarray(params["w"]), v_final=np.asarray(params["v"]),
                  w0=np.asarray(w0), directions=np.asarray(directions))
    return curves, {"compile_s": compiled - start, "train_s": done - compiled}


def first_step(steps: np.ndarray, condition: np.ndarray) -> float:
    """The first step where condition holds, NaN if it never does."""
    hits = np.flatnonzero(condition)
    return float(steps[hits[0]]) if hits.size else math.nan


def phase_boundaries(steps: np.ndarray, cos: np.ndarray, strength: np.ndarray, amplitudes: tuple[float, float]) -> dict[str, float]:
    """Phase boundaries of one run from its curves (rules in the module docstring).

    steps [T]; cos [T, 2, 2]: |cos(w_j, u_i)| for neuron j, direction i; strength [T, 2]:
    v_j |w_j|^2, the weight of neuron j's quadratic form.  Also returns which neuron (0, 1)
    captured which direction (0 for u1, 1 for u2) first, NaN if none did, and the other
    neuron's largest |cos| with that direction over the run and its value at the end: a
    follower that went for the same feature and was pushed off it has a high peak and a
    low final value.
    """
    climb = (cos - cos[0]).max(axis=(1, 2))
    phase_ii = first_step(steps, climb >= II_CLIMB)
    # a neuron that weight decay is switching off may still point along a feature
    carries = strength[:, :, None] >= CARRIES * np.asarray(amplitudes)[None, None, :]
    captured = (cos >= CAPTURED) & carries
    phase_iii = first_step(steps, captured.any(axis=(1, 2)))
    both = (captured[:, 0, 0] & captured[:, 1, 1]) | (captured[:, 0, 1] & captured[:, 1, 0])
    done = first_step(steps, both)
    leader = first_direction = follower_peak = follower_final = math.nan
    if not math.isnan(phase_iii):
        at = int(np.searchsorted(steps, phase_iii))
        j, i = np.unravel_index(np.argmax(np.where(captured[at], cos[at], -1.0)), (2, 2))
        leader, first_direction = float(j), float(i)
        follower_peak = float(cos[:, 1 - j, i].max())
        follower_final = float(cos[-1, 1 - j, i])
    return {"phase_ii": phase_ii, "phase_iii": phase_iii, "done": done, "leader": leader, "first_direction": first_direction,
            "follower_peak": follower_peak, "follower_final": follower_final, "specialised_at_end": float(both[-1])}


def neuron_strength(curves: dict[str, np.ndarray]) -> np.ndarray:
    """v_j |w_j|^2 per run, step and neuron: the weight of each neuron's quadratic form."""
    return curves["v"] * curves["w_norm"] ** 2


def all_phase_boundaries(curves: dict[str, np.ndarray], config: ToyConfig) -> dict[str, np.ndarray]:
    """``phase_boundaries`` for every run, as one array per field."""
    steps, strength = recorded_steps(config), neuron_strength(curves)
    rows = [phase_boundaries(steps, curves["cos"][r], strength[r], config.amplitudes) for r in range(len(curves["seed"]))]
    return {name: np.array([row[name] for row in rows]) for name in rows[0]}


def outcomes(curves: dict[str, np.ndarray], boundaries: dict[str, np.ndarray], config: ToyConfig) -> np.ndarray:
    """How each run ends: both features captured by different neurons ("specialised"), else
    a neuron switched off by weight decay, else both alive but not on distinct features."""
    off = (np.abs(neuron_strength(curves)[:, -1]) < SWITCHED_OFF * config.amplitudes[1]).any(axis=1)
    # at the last step, not "ever": weight decay may switch a neuron off after both features were held
    return np.where(boundaries["specialised_at_end"] > 0, OUTCOMES[0], np.where(off, OUTCOMES[1], OUTCOMES[2]))


def summarise(curves: dict[str, np.ndarray], boundaries: dict[str, np.ndarray], ends: np.ndarray, config: ToyConfig) -> list[dict]:
    """Per weight decay: counts, median phase boundaries and final losses over its seeds."""
    rows = []
    for wd in config.wds:
        runs = curves["wd"] == np.float32(wd)
        row = {"wd": wd, "runs": int(runs.sum())}
        for name in ("phase_ii", "phase_iii", "done"):
            values = boundaries[name][runs]
            reached = values[~np.isnan(values)]
            row[name] = {"reached": int(reached.size),
                         "median": float(np.median(reached)) if reached.size else None,
                         "min": float(reached.min()) if reached.size else None,
                         "max": float(reached.max()) if reached.size else None}
        row["u1_first"] = int((boundaries["first_direction"][runs] == 0).sum())
        row["followed"] = int((boundaries["follower_peak"][runs] >= FOLLOWED).sum())
        row["outcomes"] = {name: int((ends[runs] == name).sum()) for name in OUTCOMES}
        row["initial_loss"] = float(np.median(curves["train_loss"][runs, 0]))
        row["lazy_loss"] = float(np.median(curves["train_loss"][runs, 1]))  # after one record: v fitted
        row["final_train_loss"] = float(np.median(curves["train_loss"][runs, -1]))
        row["final_test_loss"] = float(np.median(curves["test_loss"][runs, -1]))
        rows.append(row)
    return rows


def representative_run(curves: dict[str, np.ndarray], boundaries: dict[str, np.ndarray], rows: list[dict]) -> int:
    """The run shown in the figure: at the weight decay where most runs specialise (ties: the
    one that gets there soonest), the specialised run whose three phase boundaries lie
    closest, in log steps, to that weight decay's medians."""
    def rank(row):
        return (-row["done"]["reached"], row["done"]["median"] if row["done"]["median"] is not None else math.inf)

    best = min(rows, key=rank)
    runs = np.flatnonzero((curves["wd"] == np.float32(best["wd"])) & ~np.isnan(boundaries["done"]))
    if not runs.size:  # nobody specialised anywhere: show the first run
        return 0
    times = np.log(np.stack([boundaries[name][runs] for name in ("phase_ii", "phase_iii", "done")], axis=1))
    return int(runs[np.argmin(((times - np.median(times, axis=0)) ** 2).sum(axis=1))])


PHASE_COLOURS = {"I": "0.85", "II": "#cfe2f3", "III": "#fde2c4"}
NEURON_COLOURS = ("C0", "C3")
BOUNDARY_NAMES = {"phase_ii": "II starts", "phase_iii": "III starts", "done": "III ends"}


def wd_label(wd: float) -> str:
    """A weight decay as a short tick label: 0, 1e-3, 3e-2."""
    if wd == 0:
        return "0"
    mantissa, exponent = f"{wd:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def shade_phases(ax, boundaries: dict[str, np.ndarray], run: int, first: float, last: float) -> None:
    """Shade and label phases I, II and III of one run on a step axis from first to last."""
    edges = [first] + [boundaries[name][run] for name in BOUNDARY_NAMES]
    edges = [last if math.isnan(e) else e for e in edges]
    for (name, colour), start, stop in zip(PHASE_COLOURS.items(), edges[:-1], edges[1:]):
        if stop > start:
            ax.axvspan(start, stop, color=colour, lw=0, zorder=0)
            ax.text(math.sqrt(start * stop), 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=9)


def plot_run(axes, curves: dict[str, np.ndarray], boundaries: dict[str, np.ndarray], run: int, config: ToyConfig) -> None:
    """Six panels of one run's curves on a log step axis, its phases shaded."""
    x = recorded_steps(config)[1:]  # a log axis: step 0 left out

    def curve(name):
        return curves[name][run, 1:]

    def finish(ax, title, ylabel, log_y=False, ylim=None):
        shade_phases(ax, boundaries, run, x[0], x[-1])
        ax.set_xscale("log")
        ax.set_xlim(x[0], x[-1])
        if log_y:
            ax.set_yscale("log")
        if ylim:
            ax.set_ylim(*ylim)
        ax.set_title(title, pad=14)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)

    ax = axes[0]
    for j in range(2):
        ax.plot(x, curve("dw")[:, j], color=NEURON_COLOURS[j], label=f"neuron {j + 1}")
    finish(ax, "hidden weights moved: |w_j − w_j(0)|", "distance", log_y=True)
    ax.legend(loc="upper left")

    ax = axes[1]
    for j in range(2):
        for i, style in enumerate(("-", "--")):
            ax.plot(x, curve("cos")[:, j, i], color=NEURON_COLOURS[j], ls=style, label=f"w{j + 1}, u{i + 1}")
    ax.axhline(CAPTURED, color="k", lw=0.6, ls=":")
    finish(ax, "|cos(w_j, u_i)| (solid u1, dashed u2)", "|cos|", ylim=(0, 1.02))
    ax.legend(loc="center left", fontsize=8)

    ax = axes[2]
    ax.plot(x, curve("cos12"), color="k")
    finish(ax, "|cos(w1, w2)|", "|cos|", ylim=(0, 1.02))

    ax = axes[3]
    for j in range(2):
        ax.plot(x, curve("v")[:, j], color=NEURON_COLOURS[j], label=f"v{j + 1}")
    ax.plot(x, curve("v_norm"), color="k", ls="--", label="|v|")
    finish(ax, "output weights", "v")
    ax.legend(loc="upper left")

    ax = axes[4]
    ax.plot(x, curve("train_loss"), color="k", label="train")
    ax.plot(x, curve("test_loss"), color="C2", ls="--", label=f"test ({config.n_test} fresh samples)")
    # v fits within the first recorded interval: the loss it started from, for comparison
    ax.axhline(curves["train_loss"][run, 0], color="k", lw=0.8, ls=":", label="train, step 0")
    finish(ax, "loss (data term)", "½ mean squared error", log_y=True)
    ax.legend(loc="lower left")

    ax = axes[5]
    for j in range(2):
        ax.plot(x, curve("grad_in_span")[:, j], color=NEURON_COLOURS[j], label=f"neuron {j + 1}")
    ax.axhline(math.sqrt(2 / config.dim), color="k", lw=0.8, ls=":", label="a random direction")
    finish(ax, "share of the gradient on w_j in span(u1, u2)", "|P g_j| / |g_j|", ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=8)


def plot_followers(ax, curves: dict[str, np.ndarray], boundaries: dict[str, np.ndarray], run: int, config: ToyConfig) -> None:
    """For every seed at the shown run's weight decay, the neuron that did not capture the
    first feature: its |cos| with that feature and with the other one."""
    x = recorded_steps(config)[1:]
    same_wd = np.flatnonzero(curves["wd"] == curves["wd"][run])
    for r in same_wd:
        if math.isnan(boundaries["leader"][r]):
            continue
        follower, direction = 1 - int(boundaries["leader"][r]), int(boundaries["first_direction"][r])
        ax.plot(x, curves["cos"][r, 1:, follower, direction], color="C1", lw=0.8, alpha=0.8)
        ax.plot(x, curves["cos"][r, 1:, follower, 1 - direction], color="C4", lw=0.8, alpha=0.8, ls="--")
    ax.plot([], [], color="C1", label="with the feature captured first")
    ax.plot([], [], color="C4", ls="--", label="with the other feature")
    ax.set_xscale("log")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(0, 1.02)
    ax.set_title(f"the other neuron, all {len(same_wd)} seeds at wd {wd_label(float(curves['wd'][run]))}")
    ax.set_xlabel("step")
    ax.set_ylabel("|cos|")
    ax.legend(loc="upper left", fontsize=8)


def plot_boundaries_by_wd(ax, curves: dict[str, np.ndarray], boundaries: dict[str, np.ndarray], rows: list[dict],
                          config: ToyConfig) -> None:
    """Every run's phase boundaries against weight decay, medians as bars, and how many runs
    never reached each boundary."""
    column = {float(np.float32(wd)): k for k, wd in enumerate(config.wds)}
    position = np.array([column[float(wd)] for wd in curves["wd"]])
    jitter = np.random.default_rng(0).uniform(-0.06, 0.06, len(position))  # fixed, so the figure is reproducible
    for (name, label), shift, colour, height in zip(BOUNDARY_NAMES.items(), (-0.27, 0.0, 0.27), ("0.45", "C0", "C1"), (1.3, 1.8, 2.5)):
        ax.scatter(position + shift + jitter, boundaries[name], s=10, color=colour, label=label)
        for k, row in enumerate(rows):
            if row[name]["median"] is not None:
                ax.plot([k + shift - 0.12, k + shift + 0.12], [row[name]["median"]] * 2, color="k", lw=1.5)
            missing = row["runs"] - row[name]["reached"]
            if missing:
                ax.text(k + shift, config.steps * height, f"−{missing}", ha="center", fontsize=8, color=colour)
    ax.set_yscale("log")
    ax.set_ylim(config.record_every, config.steps * 4)
    ax.set_xticks(range(len(config.wds)), [wd_label(wd) for wd in config.wds])
    ax.set_xlim(-0.6, len(config.wds) - 0.4)
    ax.set_xlabel("weight decay")
    ax.set_ylabel("step")
    ax.set_title("phase boundaries, every run (bars: medians;\n−k at the top: k runs never got there)", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)


def plot_outcomes(ax, rows: list[dict], config: ToyConfig) -> None:
    """Stacked bars: per weight decay, how many runs end specialised, switched off, unseparated."""
    bottom = np.zeros(len(rows))
    for name, colour in zip(OUTCOMES, ("C2", "0.5", "C3")):
        counts = np.array([row["outcomes"][name] for row in rows])
        ax.bar(range(len(rows)), counts, bottom=bottom, color=colour, label=name)
        bottom += counts
    ax.set_xticks(range(len(rows)), [wd_label(row["wd"]) for row in rows])
    ax.set_xlabel("weight decay")
    ax.set_ylabel("runs")
    ax.set_title(f"how runs end at step {config.steps}")
    ax.legend(loc="lower left", fontsize=8)


def plot(path: Path, curves: dict[str, np.ndarray], boundaries: dict[str, np.ndarray], rows: list[dict], run: int,
         config: ToyConfig) -> None:
    """The figure: one run's curves (top two rows); the other neuron of every seed at that
    weight decay, phase boundaries against weight decay, and how runs end (bottom row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(15, 12.5))
    a1, a2 = config.amplitudes
    fig.suptitle(f"Two neurons, y = {a1}(u1·x)² + {a2}(u2·x)², d = {config.dim}, n = {config.n_train}, lr = {config.lr}: "
                 f"top two rows one run (seed {int(curves['seed'][run])}, wd {wd_label(float(curves['wd'][run]))})", fontsize=12)
    plot_run(axes[:2].ravel(), curves, boundaries, run, config)
    plot_followers(axes[2, 0], curves, boundaries, run, config)
    plot_boundaries_by_wd(axes[2, 1], curves, boundaries, rows, config)
    plot_outcomes(axes[2, 2], rows, config)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def format_boundary(entry: dict, runs: int) -> str:
    """'median [min-max] (k/n)' for a phase boundary, '-' where no run got there."""
    if entry["median"] is None:
        return f"- (0/{runs})"
    return f"{entry['median']:.0f} [{entry['min']:.0f}–{entry['max']:.0f}] ({entry['reached']}/{runs})"


def summary_table(rows: list[dict]) -> str:
    """The per-weight-decay summary as a Markdown table."""
    columns = ("wd", "Phase II starts", "Phase III starts", "Phase III ends", "u1 first", "other neuron went for it",
               "specialised / switched off / unseparated", "train loss: start, lazy, end", "test loss, end")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        n = row["runs"]
        ends = " / ".join(str(row["outcomes"][name]) for name in OUTCOMES)
        lines.append(
            f"| {wd_label(row['wd'])} | {format_boundary(row['phase_ii'], n)} | {format_boundary(row['phase_iii'], n)} "
            f"| {format_boundary(row['done'], n)} | {row['u1_first']}/{n} | {row['followed']}/{n} | {ends} "
            f"| {row['initial_loss']:.2g}, {row['lazy_loss']:.2g}, {row['final_train_loss']:.2g} | {row['final_test_loss']:.2g} |"
        )
    return "\n".join(lines)


def phases_text(command: str, environment: dict, timings: dict, rows: list[dict], run: int,
                curves: dict[str, np.ndarray], config: ToyConfig) -> str:
    """phases.md: how the results were made, on what, how long it took, and the table
    (the folder's README.md, with what the results show, is written by a reader)."""
    seed, wd = int(curves["seed"][run]), float(curves["wd"][run])
    versions = environment["versions"]
    return f"""# Two neurons, two features: Li2's three phases in a toy (written by the script)

```
{command}
```

Model y_hat = v1 (w1·x)² + v2 (w2·x)², targets y = {config.amplitudes[0]} (u1·x)² + {config.amplitudes[1]} (u2·x)²
with orthonormal u1, u2 drawn per seed, x ~ N(0, I_{config.dim}), {config.n_train} training and {config.n_test}
fresh test examples, w_j(0) ~ N(0, {config.init_scale}²/d · I), v(0) = 0, full-batch gradient descent
(lr {config.lr}, {config.steps} steps) on ½·MSE + wd/2·(|W|² + |v|²); {len(config.seeds)} seeds × {len(config.wds)} weight
decays = {len(curves['seed'])} runs in one compiled, vmapped program. The design and the phase rules are in the
docstring of `experiments/toy_two_neuron.py`.

- Machine: {environment['cpu']}, {environment['cpu_count']} cores, backend {environment['backend']};
  jax {versions['jax']}, numpy {versions['numpy']}, Python {versions['python']}.
- Time: compile {timings['compile_s']:.1f} s, training {timings['train_s']:.1f} s, analysis, figure and files
  {timings['write_s']:.1f} s: {timings['total_s']:.1f} s in all, not counting Python start-up and imports.
- Files: `toy_two_neuron.png` (the figure), `curves.npz` (every recorded curve, per run,
  the phase boundaries and outcomes), `config.json` (configuration, command, environment,
  rules, timings).

## Phase boundaries (steps) by weight decay

{summary_table(rows)}

Phase boundaries: median [range] over the runs that got there (count/runs). Phase II starts when
some |cos(w_j, u_i)| has risen by {II_CLIMB} above its start; Phase III starts when a neuron has
captured a feature (|cos| ≥ {CAPTURED} and v_j|w_j|² ≥ {CARRIES}·a_i) and ends when both features are
captured by different neurons. "u1 first": the first captured feature was u1. "Other neuron went for
it": the neuron that did not capture the first feature reached |cos| ≥ {FOLLOWED} with it at some point.
Outcomes at the last step: specialised (both features captured), switched off (a neuron's v_j|w_j|² below
{SWITCHED_OFF}·a2), unseparated (neither). Train loss "lazy": after {config.record_every} steps, once v has
fitted the random features.

## The figure

Top two rows: the representative run (seed {seed}, wd {wd_label(wd)}: at the weight decay where most runs
specialise, the run whose three phase boundaries lie closest to the medians there), on a log step axis
with Phase I (grey), II (blue) and III (orange) shaded: how far each w_j has moved, |cos(w_j, u_i)|,
|cos(w1, w2)|, the output weights, training and test loss, and the share of the back-propagated gradient
on w_j that lies in span(u1, u2) (dotted: a random direction, √(2/d)). Bottom row: for every seed at
that weight decay, the neuron that did not capture the first feature, its |cos| with that feature and
with the other one; every run's phase boundaries against weight decay; how the runs end.
"""


def write_results(out: Path, config: ToyConfig, command: str, curves: dict[str, np.ndarray], timings: dict) -> list[dict]:
    """Analyse the runs and write the figure, curves.npz, config.json and phases.md into out."""
    start = time.perf_counter()
    boundaries = all_phase_boundaries(curves, config)
    ends = outcomes(curves, boundaries, config)
    rows = summarise(curves, boundaries, ends, config)
    run = representative_run(curves, boundaries, rows)
    plot(out / "toy_two_neuron.png", curves, boundaries, rows, run, config)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, step=recorded_steps(config), outcome=ends,
                        **curves, **{f"phase_{name}": values for name, values in boundaries.items()})
    write_atomic(out / "curves.npz", buffer.getvalue())
    timings = {**timings, "write_s": time.perf_counter() - start}
    timings["total_s"] = timings["compile_s"] + timings["train_s"] + timings["write_s"]
    env = environment()
    record = {
        "config": dataclasses.asdict(config),
        "command": command,
        "environment": env,
        "rules": {"II_CLIMB": II_CLIMB, "CAPTURED": CAPTURED, "CARRIES": CARRIES,
                  "SWITCHED_OFF": SWITCHED_OFF, "FOLLOWED": FOLLOWED},
        "representative_run": {"index": run, "seed": int(curves["seed"][run]), "wd": float(curves["wd"][run])},
        "timings_s": timings,
        "summary": rows,
    }
    write_atomic(out / "config.json", (json.dumps(record, indent=2) + "\n").encode())
    write_atomic(out / "phases.md", phases_text(command, env, timings, rows, run, curves, config).encode())
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The command line: output folder and the grid (seeds, weight decays), steps, lr."""
    defaults = ToyConfig()
    parser = OneLineErrorParser(prog="python experiments/toy_two_neuron.py",
                                description="Two hidden neurons learning two features: Li2's three phases in a toy.")
    parser.add_argument("--out", type=Path, required=True, help="results folder (created; files in it are replaced)")
    parser.add_argument("--seeds", type=int, default=len(defaults.seeds), help="N: seeds 0..N-1 (default %(default)s)")
    parser.add_argument("--wd", type=float_list, default=defaults.wds, help="comma-separated weight decays")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="gradient steps (default %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="learning rate (default %(default)s)")
    parser.add_argument("--record-every", type=int, default=defaults.record_every,
                        help="record the metrics every N steps; must divide --steps (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Check the arguments, train the grid, write the results folder, print the summary."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    try:
        config = ToyConfig(seeds=tuple(range(args.seeds)), wds=args.wd, steps=args.steps, lr=args.lr,
                           record_every=args.record_every)
    except ValueError as error:
        parser.error(str(error))
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a folder")
    args.out.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "experiments/toy_two_neuron.py", *(sys.argv[1:] if argv is None else argv)])
    curves, timings = run_grid(config)
    rows = write_results(args.out, config, command, curves, timings)
    print(summary_table(rows))
    print(f"compile {timings['compile_s']:.1f} s, training {timings['train_s']:.1f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
