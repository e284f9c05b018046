"""Training, as pure functions of one run, vmapped over the runs axis.

Read top to bottom:

* :func:`init_run` draws a run's split and initial parameters from its seeds;
* :func:`train_step` is one optimizer step on one minibatch;
* :func:`train_epoch_steps` scans ``train_step`` over an epoch's minibatches, and
  :func:`train_epoch` adds the epoch's metrics;
* :func:`freeze_diverged` keeps a run whose loss or parameters stop being finite at its
  last finite state;
* :func:`train_chunk` scans epochs over a fixed number of epochs;
* :func:`fourier_snapshot` measures a run's Fourier features from its parameters;
* :func:`make_train` vmaps ``init_run``, ``train_chunk`` and ``fourier_snapshot`` over runs
  (``shard_map`` over devices when there are several) and jits them.

Everything that varies across runs (seed, data seed, lr, wd, training-set size, corrupted
labels, init scale, the grokfast filter's alpha and lambda) is a traced array in
:class:`Hparams`; everything in :class:`~grokjax.config.SweepConfig` is static. A run
whose training set is smaller than the program's largest masks the rest.
The host-side loop that calls the compiled chunk (devices, checkpoints, progress) is
:mod:`grokjax.driver`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, PartitionSpec

from grokjax import fourier
from grokjax import metrics as M
from grokjax.config import GRID_AXES, SweepConfig
from grokjax.data import Dataset, batch_schedule, corrupt_labels, probe_positions, task_dataset
from grokjax.model import (
    BitsMLP,
    ModularNet,
    Transformer,
    fc1_kernel,
    fc2_kernel,
    operand_weights,
    token_embedding,
    weight_norms,
    without_output_layer,
)
from grokjax.optim import gradient_filter, make_optimizer, orthogonal_gradient
from grokjax.results import GEOMETRY_METRICS, METRIC_NAMES


class Hparams(NamedTuple):
    """One run's traced hyperparameters (a leading runs axis in a sweep)."""

    seed: Any  # int32: initialisation and batch order
    data_seed: Any  # int32: train/test split
    lr: Any  # float, in the configuration's dtype
    wd: Any
    n_train: Any  # int32: training pairs, between config.n_train_min and config.n_train
    init_scale: Any  # float: every initial parameter multiplied by it
    grokfast_alpha: Any  # float: the EMA filter's decay (unused without it)
    grokfast_lambda: Any  # float: the filter's amplification (unused without a filter)
    n_corrupted: Any  # int32: training labels replaced by a random wrong one (label_noise x n_train, rounded)


class RunData(NamedTuple):
    """A run's split, as indices into the :class:`~grokjax.data.Dataset`: the first
    ``n_train`` pairs of a random permutation train, the rest test; and the labels the run
    trains on (with ``label_noise``, some corrupted). The arrays have the configuration's
    static sizes; the weights (1 or 0) say which entries belong to the run."""

    train_pairs: jax.Array  # [config.n_train] int32
    train_weight: jax.Array  # [config.n_train] 1.0 for the run's training pairs
    train_labels: jax.Array  # [config.n_train] int32: the dataset's labels, but where train_corrupted
    train_corrupted: jax.Array  # [config.n_train] 1.0 where the label was replaced by a wrong one
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


def grid_rows(config: SweepConfig) -> list[dict]:
    """The cartesian grid of the configuration's grid fields (:data:`~grokjax.config.GRID_AXES`,
    lr fastest) as one dict per run, keyed by coordinate name; ``data_seed`` is None where
    each run's seed fixes its split."""
    values = [getattr(config, field) or (None,) for field in GRID_AXES]  # data_seeds may be None
    return [dict(zip(GRID_AXES.values(), row)) for row in itertools.product(*values)]


def grid_hparams(config: SweepConfig) -> Hparams:
    """The grid of :func:`grid_rows` as per-run arrays, one runs axis."""
    rows = grid_rows(config)

    def column(name, dtype):
        return np.array([row[name] for row in rows], dtype)

    seed = column("seed", np.int32)
    n_train = np.array([int(row["train_frac"] * config.n_pairs) for row in rows], np.int32)
    return Hparams(
        seed=seed,
        data_seed=np.array([row["seed"] if row["data_seed"] is None else row["data_seed"] for row in rows], np.int32),
        wd=column("wd", config.dtype),
        lr=column("lr", config.dtype),
        n_train=n_train,
        init_scale=column("init_scale", config.dtype),
        grokfast_alpha=column("grokfast_alpha", config.dtype),
        grokfast_lambda=column("grokfast_lambda", config.dtype),
        n_corrupted=np.array([round(row["label_noise"] * n) for row, n in zip(rows, n_train)], np.int32),
    )


def chosen_runs_hparams(config: SweepConfig, seed, wd, lr, n_train) -> Hparams:
    """Per-run arrays for runs chosen one by one (not a grid): each run's seed (which also
    fixes its split), wd, lr and training-set size; the other traced settings at the
    configuration's first values, and no corrupted labels."""
    seed = np.asarray(seed, np.int32)

    def same(values):
        return np.full(len(seed), values[0], config.dtype)

    return Hparams(seed=seed, data_seed=seed, wd=np.asarray(wd, config.dtype), lr=np.asarray(lr, config.dtype),
                   n_train=np.asarray(n_train, np.int32), init_scale=same(config.init_scales),
                   grokfast_alpha=same(config.grokfast_alphas), grokfast_lambda=same(config.grokfast_lambdas),
                   n_corrupted=np.zeros(len(seed), np.int32))


class RunKeys(NamedTuple):
    """A run's keys. ``split`` and ``labels`` depend on ``data_seed`` alone, so runs sharing a
    data seed share a split and its corrupted labels, and ``data_seed == seed`` reproduces
    the default."""

    split: jax.Array
    init: jax.Array
    shuffle: jax.Array
    labels: jax.Array  # which training labels are corrupted, and to what
    examples: jax.Array  # the parity task's samples and secret bits


def run_keys(hp: Hparams) -> RunKeys:
    data_key, seed_key = jax.random.key(hp.data_seed), jax.random.key(hp.seed)
    return RunKeys(jax.random.fold_in(data_key, 0), jax.random.fold_in(seed_key, 1), jax.random.fold_in(seed_key, 2),
                   jax.random.fold_in(data_key, 3), jax.random.fold_in(data_key, 4))


def run_dataset(config: SweepConfig, hp: Hparams) -> Dataset:
    """The examples run ``hp`` trains and tests on (:func:`grokjax.data.task_dataset`): the
    arithmetic table, or the parity samples of its data seed."""
    return task_dataset(config, run_keys(hp).examples)


def make_model(config: SweepConfig) -> ModularNet | Transformer | BitsMLP:
    if config.task == "parity":
        return BitsMLP(config.hidden, config.n_classes, jnp.dtype(config.dtype), config.activation, config.layers)
    if config.model == "transformer":
        return Transformer(config.m, config.layers, config.d_model, config.heads, config.d_mlp, config.layernorm,
                           jnp.dtype(config.dtype), style=config.transformer_style, activation=config.activation)
    one_hot = config.model in ("li2", "mlp")
    return ModularNet(config.m, config.hidden, jnp.dtype(config.dtype), one_hot, config.activation,
                      config.layers if config.model == "mlp" else 1)


def model_arguments(config: SweepConfig, inputs: jax.Array) -> tuple[jax.Array, ...]:
    """What the network is called with on examples' ``inputs`` [batch, width]: the
    token-pair networks take (a, b), the parity network the bits."""
    return (inputs,) if config.task == "parity" else (inputs[:, 0], inputs[:, 1])


def forward(config: SweepConfig, params, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The network's logits and hidden features on examples' ``inputs``."""
    return make_model(config).apply(params, *model_arguments(config, inputs))


def split_run(config: SweepConfig, key: jax.Array, n_train: jax.Array, labels: jax.Array, label_key: jax.Array,
              n_corrupted: jax.Array) -> RunData:
    """A random permutation of the pairs: the first ``n_train`` train, the rest test; the
    training pairs' ``labels`` (the dataset's, [n_pairs]), ``n_corrupted`` of them replaced
    by a wrong one drawn with ``label_key`` (:func:`grokjax.data.corrupt_labels`)."""
    order = jax.random.permutation(key, config.n_pairs)
    weight = lambda keep: keep.astype(config.dtype)  # noqa: E731
    train_pairs = order[: config.n_train]
    train_labels, corrupted = corrupt_labels(label_key, labels[train_pairs], n_train, n_corrupted, config.n_classes)
    return RunData(
        train_pairs=train_pairs,
        train_weight=weight(jnp.arange(config.n_train) < n_train),
        train_labels=train_labels,
        train_corrupted=weight(corrupted),
        test_pairs=order[config.n_train_min :],
        test_weight=weight(jnp.arange(config.n_train_min, config.n_pairs) >= n_train),
    )


def run_optimizer(config: SweepConfig, hp: Hparams) -> optax.GradientTransformation:
    """The run's optimizer, after the grokfast filter when there is one, and first ⊥Grad when
    asked for: both see the loss gradient alone (weight decay joins later, inside the
    optimizer)."""
    optimizer = make_optimizer(config.optimizer, hp.lr, hp.wd, (config.beta1, config.beta2), config.warmup_steps,
                               config.adam_eps, config.muon_adam_lr)
    if config.grokfast != "none":
        optimizer = optax.chain(gradient_filter(config.grokfast, config.grokfast_window, hp.grokfast_alpha,
                                                hp.grokfast_lambda), optimizer)
    return optax.chain(orthogonal_gradient(), optimizer) if config.ortho_grad else optimizer


def init_run(config: SweepConfig, hp: Hparams) -> tuple[RunData, RunState]:
    """A run's split, its training labels and its initial state: the model's initialisation
    times ``init_scale`` (the output layer at zero with ``zero_output_init``)."""
    keys = run_keys(hp)
    dataset = run_dataset(config, hp)
    run_data = split_run(config, keys.split, hp.n_train, dataset.label, keys.labels, hp.n_corrupted)
    initial = make_model(config).init(keys.init, *model_arguments(config, dataset.inputs[:1]))
    params = jax.tree.map(lambda p: p * hp.init_scale.astype(p.dtype), initial)
    params = without_output_layer(params) if config.zero_output_init else params
    opt_state = run_optimizer(config, hp).init(params)
    w1 = fc1_kernel(params)
    state = RunState(params, opt_state, w1, jnp.zeros((M.GRAD_HISTORY,) + w1.shape, w1.dtype),
                     jnp.zeros((M.GRAD_HISTORY, M.GRAD_HISTORY), w1.dtype), jnp.int32(-1))
    return run_data, state


class BatchCounts(NamedTuple):
    """Weighted counts of a batch's examples."""

    correct: jax.Array  # the arg-max class is the label
    collapsed: jax.Array  # the softmax has collapsed in its precision (config.softmax_dtype)
    zero_loss: jax.Array  # the loss is exactly 0 in its precision (config.loss_dtype)
    corrupted_correct: jax.Array  # corrupted examples whose arg-max class is their (wrong) label
    corrupted_true: jax.Array  # corrupted examples whose arg-max class is their true label


def batch_loss(config: SweepConfig, params, inputs, labels, weights, true_labels=None, corrupted=None
               ) -> tuple[jax.Array, BatchCounts]:
    """Weighted mean loss (padding and masked pairs have weight 0), computed per example in the
    configuration's loss precision, and the batch's counts; ``corrupted`` (weights, default
    none) marks the examples whose ``labels`` differ from their ``true_labels``."""
    logits, _ = forward(config, params, inputs)
    per_example = M.per_example_loss(config.loss, logits, labels, config.loss_dtype)
    predicted = jnp.argmax(logits, axis=-1)
    correct = (predicted == labels).astype(weights.dtype)
    if corrupted is None:  # the test set: nothing corrupted
        corrupted_correct = corrupted_true = jnp.zeros((), weights.dtype)
    else:
        corrupted = corrupted * weights
        corrupted_correct = jnp.sum(corrupted * correct)
        corrupted_true = jnp.sum(corrupted * (predicted == true_labels).astype(weights.dtype))
    counts = BatchCounts(jnp.sum(weights * correct),
                         jnp.sum(weights * M.softmax_collapsed(logits.astype(config.softmax_dtype)).astype(weights.dtype)),
                         jnp.sum(weights * (per_example == 0).astype(weights.dtype)), corrupted_correct, corrupted_true)
    # at least 1 below: a run with a smaller training set has empty steps (skipped by train_step)
    loss = jnp.sum(weights * per_example.astype(weights.dtype)) / jnp.maximum(jnp.sum(weights), 1)
    return loss, counts


class StepCarry(NamedTuple):
    params: Any
    opt_state: Any
    loss_sum: jax.Array  # sum over the epoch's examples, for the running average
    counts: BatchCounts  # summed over the epoch's examples
    grad_w1: jax.Array  # fc1 kernel gradient of the latest step
    nlm_alignment: jax.Array  # of the latest step's gradient (metrics.naive_loss_alignment)


def train_step(
    config: SweepConfig,
    optimizer: optax.GradientTransformation,
    dataset: Dataset,
    run_data: RunData,
    skip_empty: bool,
    carry: StepCarry,
    batch: tuple[jax.Array, jax.Array, jax.Array],
) -> tuple[StepCarry, None]:
    """One optimizer step on the minibatch ``run_data.train_pairs[positions]``. With
    ``skip_empty`` (runs of the program differ in training-set size), a batch without
    examples, past the run's own last one, leaves parameters, optimizer state and the
    latest gradient untouched."""
    positions, weights, last = batch
    index = run_data.train_pairs[positions]
    weights = weights * run_data.train_weight[positions]
    (loss, counts), grads = jax.value_and_grad(batch_loss, argnums=1, has_aux=True)(
        config, carry.params, dataset.inputs[index], run_data.train_labels[positions], weights, dataset.label[index],
        run_data.train_corrupted[positions]
    )
    updates, opt_state = optimizer.update(grads, carry.opt_state, carry.params)
    params = optax.apply_updates(carry.params, updates)
    n = jnp.sum(weights)
    grad_w1 = fc1_kernel(grads)
    # only the epoch's last step is recorded: measured there alone, unless the runs' last steps differ
    measure = partial(M.naive_loss_alignment, grads, carry.params)
    alignment = (measure() if skip_empty else jax.lax.cond(last, measure, lambda: carry.nlm_alignment)).astype(n.dtype)
    if skip_empty:
        keep = lambda new, old: jnp.where(n > 0, new, old)  # noqa: E731
        params, opt_state, grad_w1, alignment = jax.tree.map(
            keep, (params, opt_state, grad_w1, alignment), (carry.params, carry.opt_state, carry.grad_w1, carry.nlm_alignment))
    counts = jax.tree.map(jnp.add, carry.counts, counts)
    return StepCarry(params, opt_state, carry.loss_sum + loss * n, counts, grad_w1, alignment), None


def epoch_keys(hp: Hparams, epoch: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(batch order, feature-diversity batch) keys of one epoch, from the run's seed alone."""
    order_key, probe_key = jax.random.split(jax.random.fold_in(run_keys(hp).shuffle, epoch))
    return order_key, probe_key


def train_epoch_steps(
    config: SweepConfig, hp: Hparams, dataset: Dataset, run_data: RunData, params, opt_state, epoch: jax.Array
) -> StepCarry:
    """One epoch of optimizer steps, minibatch by minibatch, in the epoch's shuffled order."""
    w1 = fc1_kernel(params)
    zero = jnp.zeros((), w1.dtype)
    optimizer = run_optimizer(config, hp)
    skip_empty = config.masked_sizes and config.batch_size != 0
    positions, weights = batch_schedule(epoch_keys(hp, epoch)[0], hp.n_train, config.effective_batch, config.train_sizes)
    last = jnp.arange(len(positions)) == len(positions) - 1
    carry, _ = jax.lax.scan(
        partial(train_step, config, optimizer, dataset, run_data, skip_empty),
        StepCarry(params, opt_state, zero, BatchCounts(*[zero] * len(BatchCounts._fields)), jnp.zeros_like(w1), zero),
        (positions, weights, last),
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
    _, features = forward(config, params, dataset.inputs[pairs])
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
    test metrics only every ``config.eval_every`` epochs and at the last, the geometry
    metrics every ``config.geometry_every`` epochs (NaN in between)."""
    carry = train_epoch_steps(config, hp, dataset, run_data, state.params, state.opt_state, epoch)
    params = carry.params
    w1 = fc1_kernel(params)
    slot = epoch % M.GRAD_HISTORY
    grad_gram = M.updated_gram(state.grad_gram, state.grad_history, carry.grad_w1, slot)
    grad_history = state.grad_history.at[slot].set(carry.grad_w1)
    metrics = {
        "train_loss": carry.loss_sum / hp.n_train,
        "train_acc": carry.counts.correct / hp.n_train,
        **every(config.eval_every, partial(evaluate_test_set, config, dataset, run_data, params), ("test_loss", "test_acc"),
                epoch, w1.dtype, last_epoch=config.epochs - 1),
        "w1_norm": M.frobenius_norm(w1),
        "w1_delta_norm": jnp.where(epoch == 0, 0.0, M.frobenius_norm(w1 - state.prev_w1)),
        "grad_norm": M.frobenius_norm(carry.grad_w1),
        "softmax_collapse": carry.counts.collapsed / hp.n_train,
        "zero_loss_fraction": carry.counts.zero_loss / hp.n_train,
        "nlm_alignment": carry.nlm_alignment,
        # with corrupted labels: accuracy on the clean and on the corrupted training examples (against the
        # labels trained on), and how many corrupted ones the network gives their true label
        "train_acc_clean": (carry.counts.correct - carry.counts.corrupted_correct) / (hp.n_train - hp.n_corrupted),
        "train_acc_corrupted": carry.counts.corrupted_correct / hp.n_corrupted,
        "corrupted_true_acc": carry.counts.corrupted_true / hp.n_corrupted,
        # parity: the first layer's weight mass on the secret bits (NaN for the other tasks)
        "secret_weight_share": (M.weight_share(w1, dataset.relevant) if config.task == "parity"
                                else jnp.full((), jnp.nan, w1.dtype)),
    }
    measure = partial(geometry_metrics, config, hp, dataset, run_data, params, carry.grad_w1, grad_gram)
    metrics.update(every(config.geometry_every, measure, GEOMETRY_METRICS, epoch, w1.dtype))
    return RunState(params, carry.opt_state, w1, grad_history, grad_gram, state.diverged_epoch), metrics


def evaluate_test_set(config: SweepConfig, dataset: Dataset, run_data: RunData, params, epoch) -> dict[str, jax.Array]:
    """Loss and accuracy on the run's test pairs."""
    test, test_weight = run_data.test_pairs, run_data.test_weight
    evaluate = M.looped_on_cpu(partial(batch_loss, config))
    test_loss, counts = evaluate(params, dataset.inputs[test], dataset.label[test], test_weight)
    return {"test_loss": test_loss, "test_acc": counts.correct / jnp.sum(test_weight)}


def every(period: int, measure: Callable, names, epoch: jax.Array, dtype, last_epoch: int | None = None) -> dict:
    """``measure(epoch)`` after every ``period``-th epoch (and after ``last_epoch``), NaN for
    ``names`` after the others; never for ``period`` 0."""
    def skip(epoch):
        return {name: jnp.full((), jnp.nan, dtype) for name in names}

    if period <= 1:
        return (measure if period == 1 else skip)(epoch)
    due = (epoch + 1) % period == 0
    if last_epoch is not None:
        due |= epoch == last_epoch
    # epoch is the same for every run (not batched), so this stays a real branch under vmap
    return jax.lax.cond(due, measure, skip, epoch)


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
        return state, {name: jnp.zeros((), config.dtype) for name in METRIC_NAMES}

    def epoch_body(state, epoch):
        return jax.lax.cond(epoch < config.epochs, run_epoch, skip_epoch, state, epoch)

    return jax.lax.scan(epoch_body, state, first_epoch + jnp.arange(chunk_epochs))


def fourier_snapshot(config: SweepConfig, dataset: Dataset, run_data: RunData, params) -> dict[str, jax.Array]:
    """A run's Fourier features (see :mod:`grokjax.fourier`) and the norm of the signal its
    output layer sends back to the hidden features over the training set (``gf_norm``);
    for a transformer, :func:`progress_snapshot`."""
    if config.model == "transformer":
        return progress_snapshot(config, dataset, run_data, params)
    operands = operand_weights(params)
    summary = fourier.fourier_summary(*operands)
    # the output weights are the hidden neurons' own only when one hidden layer feeds the outputs
    summary["neuron_ipr"] = fourier.neuron_ipr(*operands, fc2_kernel(params).T if config.model != "mlp" or
                                               config.layers == 1 else None)
    train = run_data.train_pairs
    outputs, _ = forward(config, params, dataset.inputs[train])
    summary["gf_norm"] = M.backprop_signal_norm(config.loss, outputs, run_data.train_labels, fc2_kernel(params),
                                                run_data.train_weight)
    return summary


def progress_snapshot(config: SweepConfig, dataset: Dataset, run_data: RunData, params) -> dict[str, jax.Array]:
    """Nanda et al.'s measures of a transformer: its token embedding's norm per frequency,
    their Gini coefficient and key frequencies (:func:`grokjax.fourier.embedding_summary`),
    the restricted and excluded losses for those key frequencies
    (:func:`grokjax.fourier.progress_losses`), from the logits of every pair, and its weight
    norms by part (:func:`grokjax.model.weight_norms`)."""
    summary = {**fourier.embedding_summary(token_embedding(params)), **weight_norms(params)}
    evaluate = M.looped_on_cpu(lambda params, inputs: forward(config, params, inputs)[0])
    logits = evaluate(params, dataset.inputs)
    train_mask = jnp.zeros(config.n_pairs, logits.dtype).at[run_data.train_pairs].max(run_data.train_weight)
    summary.update(fourier.progress_losses(logits, dataset.label, summary["key_frequency"] > 0, train_mask))
    return summary


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
    dataset: Callable  # (hparams) -> the examples: the arithmetic table, or per run (leading runs axis) for parity
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
    per_run = config.task == "parity"  # each run draws its parity samples from its data seed
    data_axis = 0 if per_run else None
    init = jax.vmap(partial(init_run, config))
    chunk = jax.vmap(partial(train_chunk, config, chunk_epochs), in_axes=(0, data_axis, 0, 0, None))
    snapshot = jax.vmap(partial(fourier_snapshot, config), in_axes=(data_axis, 0, 0))
    if config.run_group:
        chunk = in_run_groups(chunk, config.run_group, per_run)
    if per_run:
        dataset = jax.jit(spread_over_runs(jax.vmap(partial(run_dataset, config)), mesh, (True,)))
    else:
        dataset = lambda hparams: task_dataset(config)  # noqa: E731
    init = spread_over_runs(init, mesh, (True,))
    chunk = spread_over_runs(chunk, mesh, (True, per_run, True, True, False))
    snapshot = spread_over_runs(snapshot, mesh, (per_run, True, True))
    return Trainer(dataset, jax.jit(init), jax.jit(chunk, donate_argnums=3), jax.jit(snapshot), chunk_epochs)


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


def in_run_groups(vmapped_chunk: Callable, group: int, dataset_per_run: bool = False) -> Callable:
    """The vmapped chunk applied to ``group`` runs at a time, in a loop (``lax.map``) over
    the groups: same results, a smaller working set (the runs axis must be a multiple of
    ``group``); the dataset is split with the runs when each has its own."""

    def grouped(hparams, dataset, run_data, state, first_epoch):
        split = lambda x: x.reshape((-1, group) + x.shape[1:])  # noqa: E731
        merge = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731

        def one_group(group_arrays):
            hparams, run_data, state, own_dataset = group_arrays
            return vmapped_chunk(hparams, dataset if own_dataset is None else own_dataset, run_data, state, first_epoch)

        per_group = jax.lax.map(one_group, jax.tree.map(split, (hparams, run_data, state,
                                                                dataset if dataset_per_run else None)))
        return jax.tree.map(merge, per_group)

    return grouped
