"""Reading the ``[runs, epochs]`` metric arrays: memorisation and grokking epochs, the
per-run summary and the per-(wd, lr) table. NumPy only; epochs are 1-based and NaN
means "not reached"."""

from __future__ import annotations

import numpy as np

# The study's grokking rule: the first 0-based index i >= GROK_MIN_INDEX such that
# test_acc[i .. i+GROK_WINDOW-1] >= GROK_THRESHOLD and test_acc[i-1] < GROK_THRESHOLD;
# the grokking epoch is i + 1 (so the earliest reportable one is epoch 51).
GROK_THRESHOLD = 0.95
GROK_MIN_INDEX = 50
GROK_WINDOW = 5
MEM_THRESHOLD = 0.99


def first_epoch(mask: np.ndarray) -> np.ndarray:
    """1-based index of the first True along the last axis of ``mask`` [runs, epochs]; NaN if none."""
    mask = np.asarray(mask, bool)
    found = mask.any(axis=-1)
    return np.where(found, mask.argmax(axis=-1) + 1.0, np.nan)


def mem_epoch(train_acc: np.ndarray, threshold: float = MEM_THRESHOLD) -> np.ndarray:
    """First epoch whose (running-average) train accuracy reaches ``threshold``."""
    return first_epoch(np.asarray(train_acc) >= threshold)


def grok_epoch(
    test_acc: np.ndarray,
    threshold: float = GROK_THRESHOLD,
    min_index: int = GROK_MIN_INDEX,
    window: int = GROK_WINDOW,
) -> np.ndarray:
    """The study's grokking epoch: test accuracy crosses ``threshold`` upward at 0-based
    index ``i >= min_index`` and stays there for ``window`` epochs; returns ``i + 1``."""
    above = np.asarray(test_acc) >= threshold
    n_epochs = above.shape[-1]
    if n_epochs < window:
        return np.full(above.shape[:-1], np.nan)
    held = np.lib.stride_tricks.sliding_window_view(above, window, axis=-1).all(axis=-1)
    below_before = np.concatenate([np.ones_like(above[..., :1]), ~above[..., :-1]], axis=-1)
    crossing = held & below_before[..., : held.shape[-1]]
    crossing[..., :min_index] = False
    return first_epoch(crossing)


def run_summary(hparams, metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per run: its coordinates, final accuracies, memorisation and grokking epochs."""
    mem = mem_epoch(metrics["train_acc"])
    grok = grok_epoch(metrics["test_acc"])
    return {
        "run": np.arange(len(hparams.seed)),
        "seed": np.asarray(hparams.seed),
        "data_seed": np.asarray(hparams.data_seed),
        "wd": np.asarray(hparams.wd, np.float64),
        "lr": np.asarray(hparams.lr, np.float64),
        "final_train_acc": metrics["train_acc"][:, -1],
        "final_test_acc": metrics["test_acc"][:, -1],
        "mem_epoch": mem,
        "grok_epoch": grok,
        "delay": grok - mem,
    }


def group_summary(summary: dict[str, np.ndarray]) -> list[dict]:
    """Aggregate runs sharing (wd, lr) over seeds: how many grokked, and their grokking
    epoch and delay (median, min, max over the runs that grokked)."""
    rows = []
    keys = sorted(set(zip(summary["wd"].tolist(), summary["lr"].tolist())))
    for wd, lr in keys:
        members = (summary["wd"] == wd) & (summary["lr"] == lr)
        grok = summary["grok_epoch"][members]
        grokked = grok[~np.isnan(grok)]
        delay = summary["delay"][members]
        delay = delay[~np.isnan(delay)]
        rows.append(
            {
                "wd": wd,
                "lr": lr,
                "runs": int(members.sum()),
                "grokked": len(grokked),
                "grok_median": float(np.median(grokked)) if len(grokked) else np.nan,
                "grok_min": float(grokked.min()) if len(grokked) else np.nan,
                "grok_max": float(grokked.max()) if len(grokked) else np.nan,
                "delay_median": float(np.median(delay)) if len(delay) else np.nan,
                "final_test_acc_mean": float(summary["final_test_acc"][members].mean()),
            }
        )
    return rows


def format_group_table(rows: list[dict]) -> str:
    """The printed table: one line per (wd, lr)."""
    header = f"{'wd':>8} {'lr':>8} {'grokked':>8} {'grok epoch: median (min-max)':>29} {'delay median':>13} {'final test acc':>15}"
    lines = [header, "-" * len(header)]
    for row in rows:
        if row["grokked"]:
            grok = f"{row['grok_median']:.0f} ({row['grok_min']:.0f}-{row['grok_max']:.0f})"
        else:
            grok = "-"
        delay = "-" if np.isnan(row["delay_median"]) else f"{row['delay_median']:.0f}"
        lines.append(
            f"{row['wd']:>8g} {row['lr']:>8g} {str(row['grokked']) + '/' + str(row['runs']):>8} "
            f"{grok:>29} {delay:>13} {row['final_test_acc_mean']:>15.3f}"
        )
    return "\n".join(lines)
