"""The PyTorch study, re-written from its description: the reference that grokjax is
checked against. Needs the optional ``torch`` extra (``pip install -e ".[torch]"``).

:func:`train_reference` trains one ModularNet the study's way — one optimizer step per
minibatch, metrics after each epoch — and returns the study's history dictionary (same
keys and meanings: ``w_norm_fc1``, ``delta_w_norm_fc1``, ``grad_norm_fc1``, …). Where the
data come from is a :class:`Schedule`: the study's own random streams
(:func:`study_schedule`), or any fixed split and batch order (the cross-check feeds
grokjax's, to compare trajectories step by step).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from grokjax.data import make_dataset
from grokjax.export import STUDY_KEYS
from grokjax.metrics import GRAD_HISTORY, NORM_FLOOR


class ModularNet(nn.Module):
    """The study's network: Embedding(m, h) for a and b, concatenate, Linear(2h, h), ReLU, Linear(h, m)."""

    def __init__(self, m: int = 97, hidden_dim: int = 128):
        super().__init__()
        self.embed = nn.Embedding(m, hidden_dim)
        self.fc1 = nn.Linear(2 * hidden_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_dim, m)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.fc1(torch.cat([self.embed(x[:, 0]), self.embed(x[:, 1])], dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


def load_flax_params(model: ModularNet, params) -> None:
    """Copy grokjax parameters into the PyTorch model (Dense kernels are [in, out]; Linear weights [out, in])."""
    p = params["params"]
    with torch.no_grad():
        model.embed.weight.copy_(torch.tensor(np.array(p["embed"]["embedding"])))
        for name in ("fc1", "fc2"):
            layer = getattr(model, name)
            layer.weight.copy_(torch.tensor(np.array(p[name]["kernel"]).T))
            layer.bias.copy_(torch.tensor(np.array(p[name]["bias"])))


@dataclass
class Schedule:
    """Where one run's data come from: the split (indices into the task's pairs), each
    epoch's minibatches (lists of positions into the train split) and each epoch's
    feature-diversity batch (positions into the train split)."""

    train_pairs: np.ndarray
    test_pairs: np.ndarray
    epoch_batches: Callable[[int], list[np.ndarray]]
    probe_batch: Callable[[int], np.ndarray]


def study_schedule(n_pairs: int, train_frac: float, batch_size: int, seed: int) -> Schedule:
    """The study's randomness: ``random.seed(s); np.random.seed(s); torch.manual_seed(s)``,
    the pair list shuffled by ``random.shuffle``, then per epoch a fresh permutation of the
    train set from torch's global generator (what ``DataLoader(shuffle=True)`` draws), cut
    into batches with the last one partial; the feature batch is the first batch of one more
    fresh pass. Call it before building the model, as the study does."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    order = list(range(n_pairs))
    random.shuffle(order)
    n_train = int(train_frac * n_pairs)
    batch = batch_size or n_train

    def epoch_batches(epoch: int) -> list[np.ndarray]:
        permutation = torch.randperm(n_train).numpy()
        return [permutation[i : i + batch] for i in range(0, n_train, batch)]

    return Schedule(
        train_pairs=np.array(order[:n_train]),
        test_pairs=np.array(order[n_train:]),
        epoch_batches=epoch_batches,
        probe_batch=lambda epoch: epoch_batches(epoch)[0],
    )


def make_optimizer(name: str, model: nn.Module, lr: float, wd: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


def mean_pairwise_cosine(rows: torch.Tensor, absolute: bool = False) -> float:
    """Mean cosine over distinct pairs of rows (upper triangle); 0 with fewer than two rows."""
    if rows.shape[0] < 2:
        return 0.0
    norms = rows.norm(dim=1).clamp_min(NORM_FLOOR)
    cosine = (rows @ rows.T) / (norms[:, None] * norms[None, :])
    if absolute:
        cosine = cosine.abs()
    upper = torch.triu_indices(rows.shape[0], rows.shape[0], offset=1)
    return cosine[upper[0], upper[1]].mean().item()


@torch.no_grad()
def epoch_metrics(model: ModularNet, schedule: Schedule, epoch: int, train_x, test_x, test_y, grads: deque, previous_w1) -> dict:
    """The study's metrics after an epoch (all but the running train loss and accuracy);
    appends this epoch's last-minibatch fc1 gradient to ``grads``."""
    last_grad = model.fc1.weight.grad.detach().clone()
    grads.append(last_grad.flatten())
    test_logits = model(test_x)
    w1 = model.fc1.weight
    features = model.features(train_x[torch.tensor(np.array(schedule.probe_batch(epoch)))])
    singular_values = torch.linalg.svdvals(features)
    p = singular_values / singular_values.sum().clamp_min(NORM_FLOOR)
    p = p[p > 0]
    return {
        "test_loss": F.cross_entropy(test_logits, test_y).item(),
        "test_acc": (test_logits.argmax(dim=1) == test_y).double().mean().item(),
        "w_norm_fc1": w1.norm().item(),
        "delta_w_norm_fc1": 0.0 if previous_w1 is None else (w1 - previous_w1).norm().item(),
        "grad_norm_fc1": last_grad.norm().item(),
        "grad_cosine_sim": mean_pairwise_cosine(torch.stack(list(grads))),
        "feature_diversity": -(p * p.log()).sum().item(),
        "node_similarity_mean": mean_pairwise_cosine(w1),
        "neuron_grad_cosine": mean_pairwise_cosine(last_grad, absolute=True),
    }


def train_reference(
    m: int,
    op: str,
    hidden: int,
    epochs: int,
    lr: float,
    wd: float,
    schedule: Schedule,
    optimizer: str = "adam",
    init_params=None,
    dtype: torch.dtype = torch.float32,
    on_epoch: Callable[[int, dict], None] | None = None,
    measure: bool = True,
) -> dict[str, list]:
    """Train one run the study's way and return its history (study keys plus ``elapsed``).
    ``init_params`` (grokjax parameters) replaces PyTorch's own initialisation;
    ``measure=False`` is the bare training loop (running train loss and accuracy only)."""
    start = time.perf_counter()
    dataset = make_dataset(m, op)
    pairs = torch.as_tensor(np.stack([dataset.a, dataset.b], axis=1), dtype=torch.long)
    labels = torch.as_tensor(dataset.label, dtype=torch.long)
    train, test = (torch.tensor(np.array(schedule.train_pairs)), torch.tensor(np.array(schedule.test_pairs)))
    train_x, train_y = pairs[train], labels[train]
    test_x, test_y = pairs[test], labels[test]

    model = ModularNet(m, hidden).to(dtype)
    if init_params is not None:
        load_flax_params(model, init_params)
    opt = make_optimizer(optimizer, model, lr, wd)
    history = {key: [] for key in STUDY_KEYS}
    grads = deque(maxlen=GRAD_HISTORY)
    previous_w1 = None
    for epoch in range(epochs):
        loss_sum, correct, total = 0.0, 0, 0
        for positions in schedule.epoch_batches(epoch):
            positions = torch.tensor(np.array(positions))
            x, y = train_x[positions], train_y[positions]
            opt.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            opt.step()
            total += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
        values = {"train_loss": loss_sum / total, "train_acc": correct / total}
        if measure:
            values.update(epoch_metrics(model, schedule, epoch, train_x, test_x, test_y, grads, previous_w1))
            previous_w1 = model.fc1.weight.detach().clone()
        for key, value in values.items():
            history[key].append(value)
        if on_epoch is not None:
            on_epoch(epoch, values)
    history["elapsed"] = time.perf_counter() - start
    return history
