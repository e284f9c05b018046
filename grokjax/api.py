"""grokjax from Python: ``run`` trains a sweep in this process, ``load`` reads a
results folder, and both return a ``Results``: the configuration, the per-run and
per-group tables as pandas DataFrames, the metrics as an xarray Dataset over the sweep's
axes, and the folder's figures as matplotlib Figures.

Reading results needs NumPy, pandas, xarray and matplotlib only; JAX starts in ``run``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grokjax import plots, report
from grokjax.analysis import group_mask
from grokjax.config import (
    GRID_AXES,
    STATIC_AXES,
    AnalysisConfig,
    ConfigError,
    SweepConfig,
    SweepPlan,
    config_hash,
    grid_plan,
    read_config_file,
    varied_axes,
)
from grokjax.files import DamagedFile, read_json
from grokjax.results import config_record, new_results_dir, timing_record, write_config

# The dimensions of the Fourier snapshots beyond (run, snapshot_epoch); the other quantities have none.
FOURIER_DIMS = {"spectrum": ("neuron", "frequency"), "dominant_frequency": ("neuron",), "concentration": ("neuron",),
                "neuron_ipr": ("neuron",),
                "embedding_norm": ("frequency",), "key_frequency": ("frequency",), "attention_weight_norm": ("layer",),
                "mlp_weight_norm": ("layer",)}


def as_given(values: np.ndarray, given: list | tuple | None) -> np.ndarray:
    """Per-run coordinates as the values they were given as: metrics.npz stores wd and lr in
    float32, whose float64 value (9.99999975e-05 for 1e-4) ``== 1e-4`` would not find. Each
    becomes the entry of ``given`` (the configuration's list) with the same float32 value,
    else the shortest decimal that round-trips in float32. Other dtypes unchanged."""
    values = np.asarray(values)
    if values.dtype != np.float32:
        return values
    listed = {np.float32(value): float(value) for value in given or ()}
    return np.array([listed.get(value, float(str(value))) for value in values], np.float64)


def summary_frame(summary: dict[str, np.ndarray]) -> pd.DataFrame:
    """The per-run table with types: epochs as nullable integers (<NA>: not reached),
    ``grokked`` and ``generalised`` as bool, ``phase`` and categorical axes as strings."""
    columns = {}
    for name, values in summary.items():
        values = np.asarray(values)
        if name == "delay" or name.endswith(("_epoch", "_start")):
            columns[name] = pd.array(values, dtype="Int64")  # NaN becomes <NA>
        elif name in ("grokked", "generalised"):
            columns[name] = values.astype(bool)
        else:
            columns[name] = values
    return pd.DataFrame(columns)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Results:
    """A finished sweep: what ``run`` trained or ``load`` read.

    ``config`` is the configuration as config.json records it (a static axis lists its
    values); ``coordinates`` per run (seed, data_seed, wd, lr, n_train and every varied
    axis; numbers as given, see ``as_given``); ``metrics`` one ``[runs, epochs]``
    array per metric; ``fourier`` the snapshot epochs and arrays of fourier.npz, or None;
    ``analysis`` the thresholds of the tables; ``record`` the whole config.json record
    (with derived sizes, command, environment, timings); ``folder`` where it lies, if anywhere."""

    config: dict
    coordinates: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]
    fourier: tuple[np.ndarray, dict[str, np.ndarray]] | None = None
    analysis: AnalysisConfig = AnalysisConfig()
    record: dict = dataclasses.field(default_factory=dict)
    folder: Path | None = None

    def __post_init__(self):
        fields = {axis: field for field, axis in GRID_AXES.items()}
        object.__setattr__(self, "coordinates", {name: as_given(values, self.config.get(fields.get(name, name)))
                                                 for name, values in self.coordinates.items()})

    def __repr__(self) -> str:
        """One line, not the arrays: what a notebook shows for ``results``."""
        grid = " x ".join(f"{name} {len(np.unique(self.coordinates[name]))}" for name in self.dims)
        where = f", {self.folder}" if self.folder is not None else ""
        return f"<grokjax.Results: {len(self.metrics['test_acc'])} runs ({grid}), {self.metrics['test_acc'].shape[1]} epochs{where}>"

    @functools.cached_property
    def analysed(self) -> report.Analysis:
        """Summary, groups, fit and stage labels, as the report computes them (from the
        coordinates as given, so numbers that depend on wd or lr, such as the fit's, may
        differ from the files' in float32's last digits)."""
        return report.analyse(self.config, self.coordinates, self.metrics, self.analysis, self.fourier)

    @property
    def dims(self) -> tuple[str, ...]:
        """The sweep's grid: the seed and every varied axis (always wd and lr)."""
        return ("seed", *varied_axes(self.config))

    @functools.cached_property
    def summary(self) -> pd.DataFrame:
        """One row per run: the columns of summary.csv."""
        return summary_frame(self.analysed.summary)

    @functools.cached_property
    def groups(self) -> pd.DataFrame:
        """One row per group of seeds (a value of every varied axis): the columns of groups.csv."""
        return pd.DataFrame(self.analysed.rows)

    @property
    def fits(self) -> list[dict]:
        """The power-law fits of the delay against wd, one per combination of the other varied
        axes that has one (its values in ``at``), as delay_fit.json's ``fits``."""
        return self.analysed.fits

    @functools.cached_property
    def plot(self) -> Plots:
        """The figures of the folder, as matplotlib Figures: ``results.plot.dashboard(wd=1e-4)``."""
        return Plots(self)

    def runs(self, **where) -> np.ndarray:
        """Indices of the runs whose coordinates equal ``where`` (``runs(wd=1e-4, seed=0)``)."""
        unknown = sorted(set(where) - set(self.coordinates))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a coordinate of this sweep (it has {', '.join(self.coordinates)})")
        return np.flatnonzero(group_mask(self.coordinates, tuple(where), tuple(where.values())))

    def to_xarray(self):
        """An ``xarray.Dataset``: one variable per metric over the sweep's grid (``seed``,
        ``wd`` and ``lr`` when they take several values, a scalar coordinate when one, and
        every other varied axis; each in ascending order) and ``epoch`` (1-based); the Fourier
        snapshots over ``snapshot_epoch`` (completed epochs; 0 is the initialisation), and
        per neuron ``neuron`` and ``frequency`` (classes 1..m//2), NaN where a narrower
        program has no such neuron (the spectrum, float16 in fourier.npz, in float32, which
        netCDF files hold); ``data_seed`` and ``n_train`` as coordinates; the configuration
        that does not vary in ``attrs``."""
        import xarray as xr

        n_epochs = self.metrics["test_acc"].shape[1]
        grid = pd.MultiIndex.from_arrays([self.coordinates[name] for name in self.dims], names=self.dims)
        if grid.has_duplicates:
            raise ValueError(f"the runs of this sweep are not a grid over {', '.join(self.dims)}: some share all of them")
        variables = {name: (("run", "epoch"), values) for name, values in self.metrics.items()}
        coords = {"epoch": np.arange(1, n_epochs + 1),
                  **{name: ("run", values) for name, values in self.coordinates.items() if name not in self.dims}}
        if self.fourier is not None:
            snapshot_epochs, snapshots = self.fourier
            coords["snapshot_epoch"] = snapshot_epochs
            for name, values in snapshots.items():
                dims = ("run", "snapshot_epoch", *FOURIER_DIMS.get(name, ()))
                variables[name] = (dims, values.astype(np.float32) if values.dtype == np.float16 else values)
                sizes = dict(zip(dims, values.shape))
                if "neuron" in sizes:
                    coords["neuron"] = np.arange(sizes["neuron"])
                if "frequency" in sizes:
                    coords["frequency"] = np.arange(1, sizes["frequency"] + 1)  # classes f = 1..m//2
        dataset = xr.Dataset(variables, coords=coords).assign_coords(xr.Coordinates.from_pandas_multiindex(grid, "run"))
        dataset = dataset.unstack("run").transpose(*self.dims, ...)
        # one wd or one lr: a scalar coordinate, so that a selection leaves curves, not 1-row grids
        dataset = dataset.squeeze([axis for axis in ("wd", "lr") if dataset.sizes[axis] == 1])
        dataset.attrs = self.constant_settings()
        return dataset

    def constant_settings(self) -> dict:
        """The configuration that every run shares, one value per key (netCDF-compatible);
        keys an older folder's config.json lacks take their defaults."""
        settings = {}
        for name, value in {**SweepConfig().to_dict(), **self.config}.items():
            axis = GRID_AXES.get(name, name)
            if axis in self.dims or value is None or (name in STATIC_AXES and isinstance(value, list)):
                continue
            settings[axis] = value[0] if isinstance(value, (list, tuple)) and len(value) == 1 else value
        if "command" in self.record:
            settings["command"] = self.record["command"]
        return settings


class Plots:
    """The figures ``python -m grokjax.report`` saves, for one ``Results``, as matplotlib
    Figures. A run is chosen by index (``run=``) or as its group's representative (the run
    whose grokking epoch is nearest the group's median) by the group's coordinates
    (``wd=1e-4``; enough of them to name one group)."""

    def __init__(self, results: Results):
        self.results = results

    def _run(self, run: int | None, where: dict) -> int:
        results, analysed = self.results, self.results.analysed
        if run is not None:
            if where:
                raise ValueError("give a run index or a group's coordinates, not both")
            if not 0 <= run < len(results.metrics["test_acc"]):
                raise ValueError(f"run {run}: this sweep has runs 0..{len(results.metrics['test_acc']) - 1}")
            return run
        unknown = sorted(set(where) - set(analysed.axes))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not an axis of this sweep's groups ({', '.join(analysed.axes)})")
        matching = [k for k, row in enumerate(analysed.rows) if all(row[axis] == value for axis, value in where.items())]
        if len(matching) != 1:
            found = "no group" if not matching else f"{len(matching)} groups"
            raise ValueError(f"{found} of this sweep match {where or 'nothing given'}; name one by {', '.join(analysed.axes)}")
        return report.representative_runs(analysed.summary, [analysed.rows[matching[0]]], analysed.axes)[0]

    def dashboard(self, run: int | None = None, rules: str | None = None, **where) -> Figure:
        """The study's 3x3 figure of one run, shaded as the folder's dashboards are (a
        transformer's phases, or the stages of the analysis's rules), or by the stages of ``rules``."""
        return report.dashboard_figure(self.results.config, self.results.metrics, self.results.analysed,
                                       self._run(run, where), rules)

    def fourier(self, run: int | None = None, **where) -> Figure:
        """One run's Fourier features (the sweep needs snapshots: ``fourier_every``)."""
        if self.results.fourier is None:
            raise ValueError("this sweep has no Fourier snapshots (fourier_every 0)")
        return report.fourier_figure(self.results.config, self.results.metrics, self.results.analysed,
                                     self.results.fourier, self._run(run, where))

    def _at(self, at: dict | None) -> dict:
        return report.resolve_at(at or {}, self.results.config, self.results.coordinates, "at")

    def overview(self, at: dict | None = None) -> Figure:
        """Test accuracy of every run, coloured by wd, the median thick; a panel per combination
        of the other axes (those in ``at``, e.g. ``{"hidden": 128}``, held at that value)."""
        analysed = self.results.analysed
        return plots.overview(self.results.metrics["test_acc"], analysed.summary, analysed.axes, self.title, self._at(at))

    def delay_vs_wd(self, at: dict | None = None) -> Figure:
        """Grokking epoch and delay against wd, log-log: each run, medians with intervals and
        the power-law fit, a colour per combination of the other axes (those in ``at`` held)."""
        analysed, at = self.results.analysed, self._at(at)
        fits = [fit for fit in analysed.fits if all(fit["at"].get(axis) == value for axis, value in at.items())]
        return plots.delay_vs_wd(analysed.summary, analysed.rows, fits, self.title, analysed.axes, at)

    def phase_diagram(self, x: str = "wd", y: str = "lr", at: dict | None = None) -> Figure:
        """Fraction grokked and median grokking epoch over two axes, a pair of panels per
        combination of the others (those in ``at`` held)."""
        report.check_figure_axes(self.results.config, x, y)
        analysed = self.results.analysed
        return plots.phase_diagram(analysed.rows, analysed.axes, x, y, self.title, self._at(at))

    def epochs_vs(self, x: str, at: dict | None = None) -> Figure:
        """Grokking epoch and delay against a numeric axis: median and interval over seeds, a
        series per combination of the other axes (those in ``at`` held)."""
        report.check_figure_axes(self.results.config, x, None)
        analysed = self.results.analysed
        return plots.epochs_vs_axis(analysed.summary, analysed.axes, x, report.GROK_QUANTITIES, self.title, self._at(at))

    @property
    def title(self) -> str:
        """The sweep's one-line description that heads every figure."""
        return report.sweep_title(self.results.config)


def load(folder: str | Path, analysis: AnalysisConfig | None = None) -> Results:
    """Read a results folder (one program or several) into a ``Results``. The tables use
    ``analysis``, by default the thresholds the folder's own tables were made with
    (delay_fit.json). FileNotFoundError naming what is missing when the folder is not a
    results folder or its sweep has not finished; DamagedFile (a ValueError) when a file is
    unreadable or disagrees with config.json."""
    folder = Path(folder)
    record, coordinates, metrics = report.load_sweep(folder)
    config = record["config"]
    if config.get("fourier_every") and not (folder / "fourier.npz").is_file():
        raise FileNotFoundError(f"{folder} has no fourier.npz, though its sweep took Fourier snapshots (fourier_every "
                                f"{config['fourier_every']})")
    fourier = report.load_fourier(folder, len(metrics["test_acc"]))
    if analysis is None:
        analysis = recorded_analysis(folder)
    return Results(config, coordinates, metrics, fourier, analysis, record, folder)


def recorded_analysis(folder: Path) -> AnalysisConfig:
    """The thresholds of a folder's tables, from its delay_fit.json (the defaults without one)."""
    path = folder / "delay_fit.json"
    if not path.is_file():
        return AnalysisConfig()
    recorded = read_json(path).get("analysis")
    if not isinstance(recorded, dict):
        raise DamagedFile(f"{path} lacks its 'analysis' object; it may have been edited")
    known = {field.name for field in dataclasses.fields(AnalysisConfig)}
    try:
        return AnalysisConfig(**{name: value for name, value in recorded.items() if name in known})
    except (ConfigError, TypeError) as error:
        raise DamagedFile(f"{path}: its analysis thresholds are invalid ({error})") from None


def run(config: SweepConfig | SweepPlan | str | Path | None = None, *, out: str | Path | None = None,
        overwrite: bool = False, progress: bool = False, cpu_devices: int | None = None, **options) -> Results:
    """Train a sweep in this process and return its ``Results``.

    ``options`` are the command's settings by the flags' names or the config keys
    (``wd=[0, 1e-4]`` or ``wds=...``, ``seeds=8``, ``hidden=[64, 128]``, ``preset="li2"``, ...),
    one value or a list each, with the command's defaults; they override ``config`` (a
    ``SweepConfig``, a ``SweepPlan``, or the path of a TOML config file) where one
    is given. ``out`` writes the results folder the command writes (an existing non-empty
    one is refused, unless ``overwrite`` and it is a results folder); ``progress`` shows the
    bar; ``cpu_devices`` as ``--cpu-devices`` (a JAX already started in this process keeps
    its devices). An unknown option or a bad value raises a ValueError with the command's
    message, before anything is written."""
    if isinstance(config, (str, Path)):
        base = read_config_file(config)
        grid_plan(base, str(config))  # errors in the file name the file
    else:
        base = None if config is None else (config if isinstance(config, SweepPlan) else SweepPlan((config,))).to_dict()
    given = {name: list(value) if isinstance(value, tuple) else value for name, value in options.items()}
    plan = grid_plan(given, "grokjax.run", base=base)

    from grokjax.devices import use_cpu_devices
    from grokjax.driver import DEFAULT_CADENCE, checkpoint_record, configure_jax, snapshot_epochs, train_plan

    use_cpu_devices(cpu_devices, runs=max(program.n_runs for program in plan.programs))
    configure_jax(plan)
    folder = None if out is None else new_results_dir(out, overwrite=overwrite)  # the last check: it may remove a folder
    arguments = [f"{name}={value!r}" for name, value in options.items()]
    if config is not None:  # a file by its path; a SweepConfig or SweepPlan is spelled out in config.json
        arguments.insert(0, repr(str(config)) if isinstance(config, (str, Path)) else "config")
    command = f"grokjax.run({', '.join(arguments)})"
    checkpoints = {} if folder is None else {"checkpoint": checkpoint_record(plan, DEFAULT_CADENCE)}
    if folder is not None:  # as the command: the configuration is in the folder before training starts
        write_config(folder / "config.json", plan, command, {"config_hash": config_hash(plan), **checkpoints})
    trained = train_plan(plan, folder, progress=progress)
    extra = {"config_hash": config_hash(plan), **checkpoints, **timing_record(plan, trained.programs)}
    fourier = (snapshot_epochs(plan.programs[0]), trained.fourier) if trained.fourier else None
    if folder is None:
        record = json.loads(json.dumps(config_record(plan, command, extra)))  # as config.json would read back
    else:
        report.write_results(folder, plan, command, extra, trained.coordinates, trained.metrics, fourier)
        record = read_json(folder / "config.json")
    return Results(record["config"], trained.coordinates, trained.metrics, fourier, AnalysisConfig(), record, folder)
