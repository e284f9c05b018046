"""Reading the ``[runs, epochs]`` metric arrays: memorisation and grokking epochs, Liu et
al.'s phases, the three stages under three rule sets, and aggregates across seeds with
bootstrap intervals and a power-law fit of the grokking delay against weight decay.

NumPy only. Epochs are 1-based and NaN means "not reached". Thresholds come from
:class:`~grokjax.config.AnalysisConfig`.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np

from grokjax.config import STAGE_RULES, AnalysisConfig

DEFAULT = AnalysisConfig()
PHASES = ("comprehension", "grokking", "memorization", "confusion")
# with corrupted training labels (Doshi et al.): see noise_phase
NOISE_PHASES = ("coexistence", "partial inversion", "full inversion", "generalization", "memorization", "forgetting")
STAGE_NAMES = ("I", "II", "III")  # per-epoch labels 1, 2, 3; 0 = no stage's condition holds
CLEANUP_SHARE = 0.95  # cleanup ends when the Gini of W_E's frequency norms reaches this share of its final value


# --- events in one run's curves -------------------------------------------------------


def first_epoch(mask: np.ndarray) -> np.ndarray:
    """1-based index of the first True along the last axis of ``mask`` [runs, epochs]; NaN if none."""
    mask = np.asarray(mask, bool)
    found = mask.any(axis=-1)
    return np.where(found, mask.argmax(axis=-1) + 1.0, np.nan)


def mem_epoch(train_acc: np.ndarray, threshold: float = DEFAULT.mem_threshold) -> np.ndarray:
    """First epoch whose (running-average) train accuracy reaches ``threshold``."""
    return first_epoch(np.asarray(train_acc) >= threshold)


def grok_epoch(
    test_acc: np.ndarray,
    threshold: float = DEFAULT.grok_threshold,
    min_index: int = DEFAULT.grok_min_index,
    window: int = DEFAULT.grok_window,
) -> np.ndarray:
    """The study's grokking epoch: the first 0-based index ``i >= min_index`` with
    test_acc[i-1] < threshold and test_acc[i .. i+window-1] >= threshold; returns i + 1."""
    above = np.asarray(test_acc) >= threshold
    n_epochs = above.shape[-1]
    if n_epochs < window:
        return np.full(above.shape[:-1], np.nan)
    held = np.lib.stride_tricks.sliding_window_view(above, window, axis=-1).all(axis=-1)
    below_before = np.concatenate([np.ones_like(above[..., :1]), ~above[..., :-1]], axis=-1)
    crossing = held & below_before[..., : held.shape[-1]]
    crossing[..., :min_index] = False
    return first_epoch(crossing)


def generalised_epoch(
    test_acc: np.ndarray, threshold: float = DEFAULT.grok_threshold, window: int = DEFAULT.grok_window
) -> np.ndarray:
    """The first epoch from which test accuracy holds ``threshold`` for ``window`` epochs, at
    any epoch: generalisation without the study's rule's earliest index."""
    above = np.asarray(test_acc) >= threshold
    if above.shape[-1] < window:
        return np.full(above.shape[:-1], np.nan)
    return first_epoch(np.lib.stride_tricks.sliding_window_view(above, window, axis=-1).all(axis=-1))


def grok_rule_miss(grok: np.ndarray, generalised: np.ndarray, min_index: int = DEFAULT.grok_min_index) -> np.ndarray:
    """Why the study's grokking epoch disagrees with the generalisation epoch, per run: "early"
    when the run generalised before the rule's earliest epoch and never crossed again (not
    grokked by the rule), "recrossing" when it did cross again after a dip (grokked, later),
    "" when the two agree. (From an epoch at or after the rule's earliest they always agree:
    the first held epoch follows one below the threshold.)"""
    early = generalised <= min_index  # 1-based: index < min_index
    return np.where(early & np.isnan(grok), "early", np.where(early & (grok > generalised), "recrossing", ""))


def w1_peak_epoch(w1_norm: np.ndarray, drop: float = DEFAULT.w1_peak_drop) -> np.ndarray:
    """Epoch of the maximum W1 norm, counted only once the norm has later fallen at least
    ``drop`` (a fraction) below it: the turn where weight decay starts to win. NaN while
    the norm is still growing (e.g. without weight decay)."""
    w1_norm = np.asarray(w1_norm)
    peak = w1_norm.argmax(axis=-1)
    after = np.arange(w1_norm.shape[-1]) >= peak[..., None]
    lowest_after = np.where(after, w1_norm, np.inf).min(axis=-1)
    turned = lowest_after <= (1 - drop) * w1_norm.max(axis=-1)
    return np.where(turned, peak + 1.0, np.nan)


def phase_label(
    train_acc: np.ndarray,
    test_acc: np.ndarray,
    threshold: float = DEFAULT.phase_threshold,
    comprehension_gap: float = DEFAULT.comprehension_gap,
) -> np.ndarray:
    """Liu et al.'s phase of each run, from when train and test accuracy first reach
    ``threshold``: *comprehension* when test follows train within ``comprehension_gap``
    of the epoch budget (Liu et al.: 1e3 of 1e5 steps, i.e. 0.01), *grokking* when it
    follows later, *memorization* when train fits and test never does, *confusion* when
    train never fits."""
    n_epochs = np.asarray(train_acc).shape[-1]
    train_fit = first_epoch(np.asarray(train_acc) >= threshold)
    test_fit = first_epoch(np.asarray(test_acc) >= threshold)
    gap_epochs = max(1.0, comprehension_gap * n_epochs)
    return np.where(
        np.isnan(train_fit),
        "confusion",
        np.where(np.isnan(test_fit), "memorization", np.where(test_fit - train_fit <= gap_epochs, "comprehension", "grokking")),
    )


def noise_phase(final: dict[str, np.ndarray], threshold: float = DEFAULT.phase_threshold) -> np.ndarray:
    """Doshi et al.'s phase of each run trained on corrupted labels, from its last epoch's
    accuracies (``final``: train_acc, test_acc, train_acc_corrupted, corrupted_true_acc;
    Doshi et al.'s code names the phases but sets no thresholds, so ``threshold`` is
    grokjax's, and the names the papers' spelling): a run that generalises (test accuracy ≥
    threshold) is in *coexistence* while it still fits the corrupted labels (≥ threshold of
    them), in *full inversion* once it gives ≥ threshold of them their true label, in
    *partial inversion* between; one that does not generalise is in *memorization* when it
    fits the whole training set and in *forgetting* when it does not. A run without
    corrupted labels (their accuracies NaN) reads *generalization*, *memorization* or
    *forgetting*."""
    generalises = final["test_acc"] >= threshold
    clean = np.isnan(final["train_acc_corrupted"])
    return np.select(
        [generalises & clean, generalises & (final["train_acc_corrupted"] >= threshold),
         generalises & (final["corrupted_true_acc"] >= threshold), generalises, final["train_acc"] >= threshold],
        ["generalization", "coexistence", "full inversion", "partial inversion", "memorization"], "forgetting")


# --- stages ------------------------------------------------------------------------------


def staircase(entries: list[np.ndarray], n_epochs: int) -> np.ndarray:
    """Per-epoch labels [runs, epochs] for rules that only move forward: 1 before the first
    entry epoch, k + 1 from the k-th (a later one wins if it comes first). NaN entries are
    never reached."""
    epochs = np.arange(1, n_epochs + 1)
    labels = np.ones((len(entries[0]), n_epochs), np.int8)
    for label, entry in enumerate(entries, start=2):
        labels[epochs >= np.nan_to_num(np.asarray(entry, float), nan=np.inf)[:, None]] = label
    return labels


def trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the measured (non-NaN) values among the last ``window`` epochs, ending at
    each epoch; NaN before a full window or when none of it was measured (a metric taken
    every few epochs, ``--geometry-every``, is averaged over the epochs that have it)."""
    x = np.asarray(x, float)
    measured = ~np.isnan(x)
    pad = np.zeros(x.shape[:-1] + (1,))
    csum = np.cumsum(np.concatenate([pad, np.where(measured, x, 0.0)], axis=-1), axis=-1)
    count = np.cumsum(np.concatenate([pad, measured], axis=-1), axis=-1)
    mean = np.full(x.shape, np.nan)
    in_window = count[..., window:] - count[..., :-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean[..., window - 1 :] = np.where(in_window > 0, (csum[..., window:] - csum[..., :-window]) / in_window, np.nan)
    return mean


def latest_measured(x: np.ndarray) -> np.ndarray:
    """Each epoch's value, or the latest measured one before it where it is NaN (a metric
    taken every few epochs); NaN before the first measurement."""
    x = np.asarray(x, float)
    last = np.maximum.accumulate(np.where(np.isnan(x), 0, np.arange(x.shape[-1])), axis=-1)
    return np.take_along_axis(x, last, axis=-1)


def stages_readme(metrics: dict[str, np.ndarray], cfg: AnalysisConfig = DEFAULT) -> np.ndarray:
    """The study README's thresholds, epoch by epoch: Stage I while w1_delta_norm is
    below ``readme_delta_w1``; Stage II while test_acc < grok_threshold with
    grad_cosine_sim > ``readme_grad_cosine`` and the W1 norm rising; Stage III while
    test_acc >= grok_threshold and grad_norm > ``readme_grad_norm``. Where several hold,
    the later stage wins; 0 where none does. w1_delta_norm is 0 at epoch 1 by definition,
    so epoch 1 is always Stage I. A grad_cosine_sim measured only every few epochs holds
    until its next measurement."""
    w1 = np.asarray(metrics["w1_norm"])
    rising = np.concatenate([np.zeros_like(w1[:, :1], bool), np.diff(w1, axis=-1) > 0], axis=-1)
    test = np.asarray(metrics["test_acc"])
    stage1 = np.asarray(metrics["w1_delta_norm"]) < cfg.readme_delta_w1
    stage2 = (test < cfg.grok_threshold) & (latest_measured(metrics["grad_cosine_sim"]) > cfg.readme_grad_cosine) & rising
    stage3 = (test >= cfg.grok_threshold) & (np.asarray(metrics["grad_norm"]) > cfg.readme_grad_norm)
    return np.where(stage3, 3, np.where(stage2, 2, np.where(stage1, 1, 0))).astype(np.int8)


def stages_script(metrics: dict[str, np.ndarray], cfg: AnalysisConfig = DEFAULT) -> np.ndarray:
    """The study's later script: Stage II from the first epoch at which the trailing
    ``script_window``-epoch means of w1_delta_norm and grad_cosine_sim exceed
    ``script_delta_w1`` and ``script_grad_cosine``; Stage III from the grokking epoch.
    (Its "remaining directions" alternative uses an arbitrary basis and is left out.)"""
    delta = trailing_mean(metrics["w1_delta_norm"], cfg.script_window)
    cosine = trailing_mean(metrics["grad_cosine_sim"], cfg.script_window)
    enter2 = first_epoch((delta > cfg.script_delta_w1) & (cosine > cfg.script_grad_cosine))
    enter3 = grok_epoch(metrics["test_acc"], cfg.grok_threshold, cfg.grok_min_index, cfg.grok_window)
    return staircase([enter2, enter3], np.asarray(metrics["test_acc"]).shape[-1])


def stage3_event_epoch(metrics: dict[str, np.ndarray], cfg: AnalysisConfig = DEFAULT) -> np.ndarray:
    """The event that starts Stage III under the "events" rules: the W1 norm's peak
    (``w1_peak``) or the first epoch with test_acc >= ``test_rise_threshold`` (``test_rise``)."""
    if cfg.stage3_event == "w1_peak":
        return w1_peak_epoch(metrics["w1_norm"], cfg.w1_peak_drop)
    return first_epoch(np.asarray(metrics["test_acc"]) >= cfg.test_rise_threshold)


def stages_events(metrics: dict[str, np.ndarray], cfg: AnalysisConfig = DEFAULT) -> np.ndarray:
    """Stages from each run's own events: Stage I (lazy: the top layer memorises) until
    the memorisation epoch; Stage II (independent feature learning) from memorisation to
    the Stage III event (:func:`stage3_event_epoch`); Stage III (interactive feature
    learning) from that event on, through grokking."""
    enter2 = mem_epoch(metrics["train_acc"], cfg.mem_threshold)
    return staircase([enter2, stage3_event_epoch(metrics, cfg)], np.asarray(metrics["train_acc"]).shape[-1])


def stage_labels(metrics: dict[str, np.ndarray], rules: str, cfg: AnalysisConfig = DEFAULT) -> np.ndarray:
    """Per-epoch stage labels [runs, epochs] (0 none, 1 I, 2 II, 3 III) under ``rules``."""
    return {"events": stages_events, "readme": stages_readme, "script": stages_script}[rules](metrics, cfg)


def stage_starts(labels: np.ndarray) -> np.ndarray:
    """First epoch labelled I, II and III: [runs, 3], NaN for a stage never entered."""
    return np.stack([first_epoch(labels == stage) for stage in (1, 2, 3)], axis=-1)


# --- per run and across seeds ---------------------------------------------------------


COORDINATE_ORDER = ("seed", "data_seed", "wd", "lr", "n_train")  # first in a summary; other axes follow
CORRUPTION_METRICS = ("train_acc", "test_acc", "train_acc_clean", "train_acc_corrupted", "corrupted_true_acc")


def held_test_metrics(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``metrics`` with test loss and accuracy measured every few epochs (``--eval-every``,
    NaN between) held at their latest measurement until the next, so that the per-epoch
    rules read them; a diverged run's stay NaN from its divergence on."""
    healthy = ~np.isnan(np.asarray(metrics["train_loss"], float))
    return {**metrics, **{name: np.where(healthy, latest_measured(metrics[name]), np.nan)
                          for name in ("test_loss", "test_acc") if name in metrics}}


def run_summary(coordinates: dict[str, np.ndarray], metrics: dict[str, np.ndarray], cfg: AnalysisConfig = DEFAULT,
                fourier: tuple[np.ndarray, dict[str, np.ndarray]] | None = None) -> dict[str, np.ndarray]:
    """One row per run: coordinates (seed, data_seed, wd, lr, n_train, then any other axis
    of the sweep), final accuracies, events, phase and stage starts, and with a transformer's
    progress measures in ``fourier`` (snapshot epochs, arrays) the start of each of Nanda et
    al.'s phases. Test metrics measured every few epochs count from their measurement
    (:func:`held_test_metrics`)."""
    metrics = held_test_metrics(metrics)
    mem = mem_epoch(metrics["train_acc"], cfg.mem_threshold)
    grok = grok_epoch(metrics["test_acc"], cfg.grok_threshold, cfg.grok_min_index, cfg.grok_window)
    generalised = generalised_epoch(metrics["test_acc"], cfg.grok_threshold, cfg.grok_window)
    names = [name for name in COORDINATE_ORDER if name in coordinates]
    names += [name for name in coordinates if name not in COORDINATE_ORDER]
    summary = {"run": np.arange(len(metrics["test_acc"]))}
    for name in names:
        values = np.asarray(coordinates[name])
        summary[name] = values.astype(np.float64) if values.dtype.kind == "f" else values
    summary.update({
        "final_train_acc": metrics["train_acc"][:, -1],
        "final_test_acc": metrics["test_acc"][:, -1],
        "mem_epoch": mem,
        "grok_epoch": grok,
        "delay": grok - mem,
        "grokked": (~np.isnan(grok)).astype(int),
        # a diverged run's metrics read NaN from the epoch its loss or parameters stopped being finite
        "diverged_epoch": first_epoch(np.isnan(metrics["train_loss"])),
        "phase": phase_label(metrics["train_acc"], metrics["test_acc"], cfg.phase_threshold, cfg.comprehension_gap),
        "w1_peak_epoch": w1_peak_epoch(metrics["w1_norm"], cfg.w1_peak_drop),
        "test_rise_epoch": first_epoch(np.asarray(metrics["test_acc"]) >= cfg.test_rise_threshold),
        # generalisation at any epoch (Power et al. count the first epoch at the threshold; this one also holds it)
        "generalised_epoch": generalised,
        "generalised": (~np.isnan(generalised)).astype(int),
        "grok_rule_miss": grok_rule_miss(grok, generalised, cfg.grok_min_index),
    })
    for rules in STAGE_RULES:
        starts = stage_starts(stage_labels(metrics, rules, cfg))
        for k, name in enumerate(STAGE_NAMES):
            summary[f"{rules}_stage{name}_start"] = starts[:, k]
    if fourier is not None and "excluded_loss" in fourier[1]:
        summary.update(progress_phases(*fourier, metrics["test_loss"]))
    if np.isfinite(np.asarray(metrics.get("train_acc_corrupted", np.nan))).any():  # some run has corrupted labels
        final = {name: np.asarray(metrics[name], float)[:, -1] for name in CORRUPTION_METRICS}
        summary.update({f"final_{name}": final[name] for name in CORRUPTION_METRICS[2:]})
        summary["noise_phase"] = noise_phase(final, cfg.phase_threshold)
    return summary


def median_reached(epochs: np.ndarray) -> float:
    """Median over the runs that reached an event (non-NaN); NaN if none did."""
    reached = np.asarray(epochs, float)[~np.isnan(epochs)]
    return float(np.median(reached)) if len(reached) else np.nan


def bootstrap_median(values: np.ndarray, samples: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Median and its 95% percentile-bootstrap interval; NaNs for no values."""
    values = np.asarray(values, float)
    if len(values) == 0:
        return np.nan, np.nan, np.nan
    medians = np.median(rng.choice(values, size=(samples, len(values)), replace=True), axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(np.median(values)), float(low), float(high)


def fit_line(
    x: np.ndarray, y: np.ndarray, samples: int = DEFAULT.bootstrap_samples, seed: int = DEFAULT.bootstrap_seed
) -> dict | None:
    """Least-squares line y = intercept + slope * x, with a 95% interval for the slope from a
    bootstrap that resamples points within each x value. None with fewer than two distinct
    finite x values."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    levels = np.unique(x)
    if len(levels) < 2:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(x == level) for level in levels]
    slopes = []
    for _ in range(samples):
        index = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        slopes.append(np.polyfit(x[index], y[index], 1)[0])
    low, high = np.percentile(slopes, [2.5, 97.5])
    return {"slope": float(slope), "slope_low": float(low), "slope_high": float(high), "intercept": float(intercept),
            "n_points": int(len(x)), "n_levels": int(len(levels))}


def fit_power_law(
    x: np.ndarray, y: np.ndarray, samples: int = DEFAULT.bootstrap_samples, seed: int = DEFAULT.bootstrap_seed
) -> dict | None:
    """Least-squares fit of log y = log c - alpha log x, so y = c * x^(-alpha), with a 95%
    interval for alpha from a bootstrap that resamples points within each x value
    (:func:`fit_line` on the logarithms). None with fewer than two distinct x values."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
    line = fit_line(np.log(x[keep]), np.log(y[keep]), samples, seed)
    if line is None:
        return None
    return {"alpha": -line["slope"], "alpha_low": -line["slope_high"], "alpha_high": -line["slope_low"],
            "prefactor": float(np.exp(line["intercept"])), "n_points": line["n_points"], "n_levels": line["n_levels"]}


def group_keys(summary: dict[str, np.ndarray], axes: tuple[str, ...]) -> list[tuple]:
    """The distinct combinations of the ``axes`` columns, sorted."""
    return sorted(set(zip(*(summary[axis].tolist() for axis in axes))))


def group_mask(summary: dict[str, np.ndarray], axes: tuple[str, ...], key: tuple) -> np.ndarray:
    """The runs whose ``axes`` columns equal ``key``."""
    mask = np.ones(len(summary["wd"]), bool)
    for axis, value in zip(axes, key):
        mask &= summary[axis] == value
    return mask


class Milestone(NamedTuple):
    """An event the printed table reports per group: the summary column of its epoch, the
    ``groups.csv`` key of its median, the table's header, and why a run may never reach it."""

    column: str
    key: str
    header: str
    missing: str

    @property
    def reached_key(self) -> str:
        """The ``groups.csv`` key of how many runs reached it."""
        return self.key.replace("_median", "_reached")


def milestones(cfg: AnalysisConfig = DEFAULT, transformer: bool = False) -> tuple[Milestone, ...]:
    """The events the table reports: Li2's stages under ``cfg.stage_rules`` for the MLPs;
    for a transformer, Nanda et al.'s phases from its progress measures (the stages there
    would read the last MLP's weight norm, which says little about its circuit)."""
    if transformer:
        return (Milestone("circuit_epoch", "circuit_median", "circuit from",
                          "runs without progress measures (the sweep took no snapshots: --fourier-every)"),
                Milestone("cleanup_epoch", "cleanup_median", "cleanup from",
                          "runs whose test loss never fell below half its peak after memorisation"),
                Milestone("cleanup_end_epoch", "cleanup_end_median", "cleanup to",
                          f"runs whose W_E frequency norms' Gini never reached {CLEANUP_SHARE:.0%} of its final value"))
    rules = cfg.stage_rules
    if rules == "events":
        stage3 = (f"runs whose W1 norm never turned (fell {cfg.w1_peak_drop:.0%} below its peak), as without weight "
                  "decay or with a decay that sets the norm without a peak (Muon's)" if cfg.stage3_event == "w1_peak"
                  else f"runs whose test accuracy never reached {cfg.test_rise_threshold:g}")
        stage2 = f"runs that never memorised (train accuracy {cfg.mem_threshold:g})"
    else:
        stage2 = stage3 = f"runs that never met the {rules} rules' thresholds (or whose metrics were not measured)"
        if rules == "script":
            stage3 = "runs that never grokked by the study's rule"
    return (Milestone(f"{rules}_stageII_start", "stageII_start_median", "II from", stage2),
            Milestone(f"{rules}_stageIII_start", "stageIII_start_median", "III from", stage3))


def group_summary(summary: dict[str, np.ndarray], cfg: AnalysisConfig = DEFAULT, axes: tuple[str, ...] = ("wd", "lr"),
                  events: tuple[Milestone, ...] | None = None) -> list[dict]:
    """Aggregate over seeds the runs sharing their values of ``axes`` (every varied axis
    but the seed): fraction grokked, grokking epoch and delay (median with bootstrap 95%
    interval, over the runs that grokked), the runs that generalised at any epoch with their
    median epoch and why the study's rule misses some, the median epoch and count of each
    of ``events`` (default: the stages under the configured rules), and the count of each
    phase. Diverged runs are left out of everything but their count."""
    events = milestones(cfg) if events is None else events
    rng = np.random.default_rng(cfg.bootstrap_seed)
    rows = []
    healthy = np.isnan(summary["diverged_epoch"])
    for key in group_keys(summary, axes):
        group = group_mask(summary, axes, key)
        members = group & healthy
        grok = summary["grok_epoch"][members]
        grokked = grok[~np.isnan(grok)]
        delay = summary["delay"][members]
        delay = delay[~np.isnan(delay)]
        runs = int(members.sum())
        row = {**dict(zip(axes, key)), "runs": runs, "diverged": int((group & ~healthy).sum()), "grokked": len(grokked),
               "frac_grokked": len(grokked) / runs if runs else np.nan}
        # the generalisation epochs are resampled with the grokking epochs' draws: where the two
        # agree so do their intervals, and the grokking and delay intervals are as without them
        generalised_rng = copy.deepcopy(rng)
        row["grok_median"], row["grok_ci_low"], row["grok_ci_high"] = bootstrap_median(grokked, cfg.bootstrap_samples, rng)
        row["grok_min"] = float(grokked.min()) if len(grokked) else np.nan
        row["grok_max"] = float(grokked.max()) if len(grokked) else np.nan
        row["delay_median"], row["delay_ci_low"], row["delay_ci_high"] = bootstrap_median(delay, cfg.bootstrap_samples, rng)
        general = summary["generalised_epoch"][members]
        general = general[~np.isnan(general)]
        row["generalised"] = len(general)
        row["generalised_median"], row["generalised_ci_low"], row["generalised_ci_high"] = bootstrap_median(
            general, cfg.bootstrap_samples, generalised_rng)
        for miss in ("early", "recrossing"):
            row[f"n_{miss}"] = int((summary["grok_rule_miss"][members] == miss).sum())
        row["mem_median"] = median_reached(summary["mem_epoch"][members])
        for event in events:
            epochs = summary[event.column][members] if event.column in summary else np.full(runs, np.nan)
            row[event.key] = median_reached(epochs)
            row[event.reached_key] = int((~np.isnan(epochs)).sum())
        row["final_test_acc_mean"] = float(summary["final_test_acc"][members].mean()) if runs else np.nan
        for phase in PHASES:
            row[f"n_{phase}"] = int((summary["phase"][members] == phase).sum())
        if "noise_phase" in summary:
            for phase in NOISE_PHASES:
                row[f"n_noise_{phase.replace(' ', '_')}"] = int((summary["noise_phase"][members] == phase).sum())
        rows.append(row)
    return rows


def medians_along(summary: dict[str, np.ndarray], x: str, axes: tuple[str, ...], column: str,
                  cfg: AnalysisConfig = DEFAULT) -> list[dict]:
    """``column`` (an epoch: NaN = never reached) against axis ``x``: per series (a value of
    every other axis in ``axes``) and per value of ``x``, the median over the runs that
    reached it with a bootstrap 95% interval, and how many of the (healthy) runs reached it."""
    rng = np.random.default_rng(cfg.bootstrap_seed)
    others = tuple(axis for axis in axes if axis != x)
    healthy = np.isnan(summary["diverged_epoch"])
    series = []
    for key in group_keys(summary, others):
        points = []
        for (value,) in group_keys(summary, (x,)):
            members = group_mask(summary, others + (x,), key + (value,)) & healthy
            values = summary[column][members]
            reached = values[~np.isnan(values)]
            median, low, high = bootstrap_median(reached, cfg.bootstrap_samples, rng)
            points.append({"x": value, "median": median, "low": low, "high": high, "reached": len(reached),
                           "runs": int(members.sum())})
        series.append({"at": dict(zip(others, key)), "points": points})
    return series


def has_real_delay(summary: dict[str, np.ndarray], n_epochs: int, cfg: AnalysisConfig = DEFAULT) -> np.ndarray:
    """Runs with wd > 0, not diverged, whose delay exceeds the comprehension gap
    (``comprehension_gap`` of the ``n_epochs`` budget, at least one epoch): the runs a delay
    law can describe (NaN delay, never grokked, is False)."""
    waited = summary["delay"] > max(1.0, cfg.comprehension_gap * n_epochs)
    return (summary["wd"] > 0) & waited & np.isnan(summary["diverged_epoch"])


def delay_power_law(summary: dict[str, np.ndarray], n_epochs: int, cfg: AnalysisConfig = DEFAULT,
                    at: dict | None = None) -> dict | None:
    """delay ∝ wd^(-alpha) over the runs matching ``at`` (a value of each other varied axis:
    ``{"lr": 1e-3}``; every run when empty) with wd > 0 whose delay exceeds the comprehension
    gap (``comprehension_gap`` of the ``n_epochs`` budget): runs where test accuracy rises
    with train accuracy have a delay near or below 0 that no power law describes. Also
    returns each weight decay's median delay with its bootstrap interval. None with fewer
    than two weight decays to fit."""
    at = {axis: value.item() if isinstance(value, np.generic) else value for axis, value in (at or {}).items()}
    use = group_mask(summary, tuple(at), tuple(at.values())) & has_real_delay(summary, n_epochs, cfg)
    fit = fit_power_law(summary["wd"][use], summary["delay"][use], cfg.bootstrap_samples, cfg.bootstrap_seed)
    if fit is None:
        return None
    rng = np.random.default_rng(cfg.bootstrap_seed)
    levels = []
    for wd in np.unique(summary["wd"][use]):
        delays = summary["delay"][use & (summary["wd"] == wd)]
        median, low, high = bootstrap_median(delays, cfg.bootstrap_samples, rng)
        levels.append({"wd": float(wd), "median": median, "low": low, "high": high, "n": int(len(delays))})
    return {**fit, "at": at, "levels": levels}


def combinations(summary: dict[str, np.ndarray], axes: tuple[str, ...], at: dict | None = None) -> list[dict]:
    """Every combination of values of ``axes`` among the runs, in sorted order; those of the
    axes fixed in ``at`` take its value only."""
    at = at or {}
    if not axes:
        return [{}]
    keys = [dict(zip(axes, key)) for key in group_keys(summary, axes)]
    return [key for key in keys if all(key[axis] == value for axis, value in at.items() if axis in key)]


def top_in_order(items: list, score, n: int) -> list:
    """The ``n`` items with the highest ``score`` (ties: the earlier), in their given order."""
    keep = sorted(sorted(range(len(items)), key=lambda k: -score(items[k]))[:n])
    return [items[k] for k in keep]


def delay_power_laws(summary: dict[str, np.ndarray], n_epochs: int, cfg: AnalysisConfig = DEFAULT,
                     axes: tuple[str, ...] = ("wd", "lr"), at: dict | None = None) -> list[dict]:
    """:func:`delay_power_law` at every combination of the varied ``axes`` other than wd
    (those fixed in ``at`` at its value), in sorted order; a combination with fewer than two
    weight decays to fit has no fit."""
    others = tuple(axis for axis in axes if axis != "wd")
    fits = (delay_power_law(summary, n_epochs, cfg, combination) for combination in combinations(summary, others, at))
    return [fit for fit in fits if fit is not None]


def format_value(value) -> str:
    """A coordinate as tables and titles show it: numbers in %g (1e-4 as 0.0001), names as they are."""
    value = value.item() if isinstance(value, np.generic) else value
    return f"{value:g}" if isinstance(value, (float, int)) and not isinstance(value, bool) else str(value)


def group_label(values: dict, separator: str = " ") -> str:
    """``wd 0.0001 lr 0.001``: a group's coordinates, for tables and titles."""
    return separator.join(f"{axis} {format_value(value)}" for axis, value in values.items())


MAX_PRINTED_FITS = 8  # delay fits printed under the table; delay_fit.json keeps every one


def format_group_table(rows: list[dict], fits: list[dict] = (), axes: tuple[str, ...] = ("wd", "lr"),
                       events: tuple[Milestone, ...] | None = None, cfg: AnalysisConfig = DEFAULT,
                       at: dict | None = None) -> str:
    """The printed table: one line per group (a value of each of ``axes``): runs grokked by
    the study's rule and generalised at any epoch, their epochs, the delay and the median
    epoch of each of ``events`` (default: the stages); a numbered note for every cell where
    the study's rule and generalisation disagree, or where runs never reached an event, says
    why; then the power-law fits of the delay, one per combination of the other axes (those
    in ``at`` held at its value)."""
    events = milestones(cfg) if events is None else events
    notes: dict[str, list[tuple[int, int, str]]] = {}  # what a note says -> the runs it counts per group

    def marked(text: str, found: list[tuple[str, int, int, str]]) -> str:
        """``text`` with the numbers of the notes that explain it: (what the note says, runs it
        counts, runs, the group)."""
        for note, count, runs, where in found:
            notes.setdefault(note, []).append((count, runs, where))
        return text + (f"[{','.join(str(list(notes).index(item[0]) + 1) for item in found)}]" if found else "")

    def interval(median, low, high):
        return "-" if np.isnan(median) else f"{median:.0f} [{low:.0f}-{high:.0f}]"

    earliest = cfg.grok_min_index + 1
    misses = {"early": f"grokked: runs that generalised before epoch {earliest}, the study's rule's earliest, and stayed "
                       "there, so that the rule counts them as not grokked",
              "recrossing": f"grokked: runs that generalised before epoch {earliest}, dipped and crossed again, so that "
                            "the rule counts the later crossing"}
    noisy = bool(rows) and "n_noise_coexistence" in rows[0]
    header = [*axes, "grokked", "grok epoch [95% CI]", "range", "delay [95% CI]", "generalised", "gen. epoch [95% CI]",
              *(event.header for event in events), "test acc", *(["coexist."] if noisy else [])]
    table = []
    for row in rows:
        where = group_label({axis: row[axis] for axis in axes})
        cells = [format_value(row[axis]) for axis in axes]
        cells.append(marked(f"{row['grokked']}/{row['runs']}", [(text, row[f"n_{miss}"], row["runs"], where)
                                                                for miss, text in misses.items() if row[f"n_{miss}"]]))
        cells += [interval(row["grok_median"], row["grok_ci_low"], row["grok_ci_high"]),
                  "-" if not row["grokked"] else f"{row['grok_min']:.0f}-{row['grok_max']:.0f}",
                  interval(row["delay_median"], row["delay_ci_low"], row["delay_ci_high"]),
                  f"{row['generalised']}/{row['runs']}",
                  interval(row["generalised_median"], row["generalised_ci_low"], row["generalised_ci_high"])]
        for event in events:
            reached, median = row[event.reached_key], row[event.key]
            missing = [(f"{event.header}: {event.missing}", row["runs"] - reached, row["runs"], where)]
            cells.append(marked("-" if np.isnan(median) else f"{median:.0f}", missing if reached < row["runs"] else []))
        cells.append(f"{row['final_test_acc_mean']:.3f}")
        if noisy:
            cells.append(f"{row['n_noise_coexistence']}/{row['runs']}")
        table.append(cells)
    width = [max(len(name), 8, *(len(cells[k]) for cells in table)) for k, name in enumerate(header)]
    lines = [" ".join(f"{name:>{w}}" for name, w in zip(header, width))]
    lines.append("-" * len(lines[0]))
    lines += [" ".join(f"{cell:>{w}}" for cell, w in zip(cells, width)) for cells in table]
    lines.append(f"grokked: the study's rule (test accuracy crosses {cfg.grok_threshold:g} at epoch {earliest} or later and "
                 f"holds it {cfg.grok_window} epochs); generalised: holds it {cfg.grok_window} epochs from any epoch; "
                 "grok epoch and delay over the runs that grokked; "
                 + ("circuit from, cleanup from, cleanup to: median epoch each of Nanda et al.'s phases begins and cleanup ends"
                    if events and events[0].column == "circuit_epoch" else "II/III from: median epoch each stage starts")
                 + (f"; coexist.: runs that end fitting ≥ {cfg.phase_threshold:g} of their corrupted training labels while "
                    f"generalising (test accuracy ≥ {cfg.phase_threshold:g}), Doshi et al.'s coexistence" if noisy else ""))
    for k, (note, counts) in enumerate(notes.items(), 1):
        every = len(counts) == len(rows) and all(count == runs for count, runs, _ in counts)
        lines.append(f"[{k}] {note}: " + ("every run" if every else ", ".join(f"{count}/{runs} at {where}"
                                                                             for count, runs, where in counts)))
    if any(row[event.reached_key] < row["runs"] for row in rows for event in events):
        lines.append("a stage or phase column shows the median over the runs that reached it")
    diverged = [f"{group_label({axis: row[axis] for axis in axes})}: {row['diverged']}" for row in rows if row["diverged"]]
    if diverged:
        lines.append(f"diverged (loss or parameters not finite; left out above): {', '.join(diverged)}")
    shown = top_in_order(list(fits), lambda fit: fit["n_points"], MAX_PRINTED_FITS)
    lines.append("")
    lines += [f"delay ∝ wd^-α at {group_label(fit['at'], ', ')}: α = {fit['alpha']:.2f} "
              f"[95% CI {fit['alpha_low']:.2f}-{fit['alpha_high']:.2f}] from {fit['n_points']} runs at {fit['n_levels']} "
              "weight decays (runs with a delay above the comprehension gap)" for fit in shown]
    if len(fits) > len(shown):
        lines.append(f"{len(fits) - len(shown)} more combinations have a fit (the {len(shown)} with the most runs are shown); "
                     "delay_fit.json holds every one")
    combined = {tuple(row[axis] for axis in axes if axis != "wd") for row in rows
                if all(row[axis] == value for axis, value in (at or {}).items() if axis != "wd")}
    if len({row["wd"] for row in rows if row["wd"] > 0}) < 2:
        lines.append("no delay fit: it needs runs at two or more weight decays above 0")
    elif len(fits) < len(combined):
        lines.append(f"no delay fit at {len(combined) - len(fits)} of {len(combined)} combinations of the other axes: "
                     "fewer than two weight decays have runs with a delay above the comprehension gap")
    return "\n".join(lines)


def fourier_moments(snapshot_epochs: np.ndarray, test_acc: np.ndarray, memorised: float) -> list[int]:
    """Indices of up to three snapshots of one run to show: before grokking (nearest the
    memorisation epoch ``memorised``), during (nearest the first epoch with test accuracy
    >= 0.5) and after (the last); a third and two thirds of the way when a moment never
    came. Moments that share a snapshot are shown once."""
    epochs = np.asarray(snapshot_epochs)
    half = np.flatnonzero(test_acc >= 0.5)
    targets = (
        epochs[-1] / 3 if np.isnan(memorised) else memorised,
        2 * epochs[-1] / 3 if len(half) == 0 else half[0] + 1,
        epochs[-1],
    )
    chosen = [int(np.argmin(np.abs(epochs - target))) for target in targets]
    return sorted(set(chosen))


def progress_phases(snapshot_epochs: np.ndarray, snapshots: dict[str, np.ndarray], test_loss: np.ndarray,
                    cleanup_share: float = CLEANUP_SHARE) -> dict[str, np.ndarray]:
    """Nanda et al.'s three phases of each transformer run, from its progress measures at the
    snapshots (``excluded_loss``, ``gini`` [runs, snapshots]) and its test loss per epoch
    [runs, epochs] (measured every few epochs is fine):

    * memorisation, until ``circuit_epoch``: the snapshot where the excluded loss is lowest
      (from there on removing the key frequencies hurts more and more: the Fourier circuit
      grows);
    * circuit formation, until ``cleanup_epoch``: the first epoch after it whose test loss
      is below half the largest test loss from ``circuit_epoch`` to the end of training
      (the sharp fall of the test loss);
    * cleanup, until ``cleanup_end_epoch``: the first snapshot after that where the Gini
      coefficient of W_E's frequency norms reaches ``cleanup_share`` of its final value
      (the embedding has become as sparse as it will).

    A phase that never starts reads NaN, and so do the later ones."""
    epochs = np.asarray(snapshot_epochs, float)
    held = latest_measured(test_loss)
    runs = len(held)
    circuit, cleanup, cleanup_end = (np.full(runs, np.nan) for _ in range(3))
    for run in range(runs):
        excluded, gini = snapshots["excluded_loss"][run], snapshots["gini"][run]
        if np.isnan(excluded).all():
            continue
        circuit[run] = epochs[np.nanargmin(excluded)]
        after = held[run, int(circuit[run]):]
        peak = np.nanmax(after) if np.isfinite(after).any() else np.nan
        fallen = np.flatnonzero(after < peak / 2)
        if len(fallen) == 0:
            continue
        cleanup[run] = circuit[run] + fallen[0] + 1
        sparse = np.flatnonzero((epochs >= cleanup[run]) & (gini >= cleanup_share * gini[-1]))
        cleanup_end[run] = epochs[sparse[0]] if len(sparse) else np.nan
    return {"circuit_epoch": circuit, "cleanup_epoch": cleanup, "cleanup_end_epoch": cleanup_end}


def final_embedding(snapshots: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each transformer run's token embedding at its last snapshot: the number of key
    frequencies, the Gini of its frequency norms and its key frequency classes ("2 4")."""
    key = np.asarray(snapshots["key_frequency"])[:, -1] > 0
    return {
        "final_n_key_frequencies": np.asarray(snapshots["n_key_frequencies"])[:, -1],
        "final_gini": np.asarray(snapshots["gini"])[:, -1],
        "key_frequencies": np.array([" ".join(str(f + 1) for f in np.flatnonzero(row)) for row in key]),
    }
