"""grokjax from Python: ``grokjax.run`` and ``grokjax.load`` return the command's results as
labelled tables and grids, and the quickstart runs."""

import contextlib
import importlib.util
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure

import grokjax
from grokjax import sweep
from grokjax.config import SweepConfig
from grokjax.files import DamagedFile

OPTIONS = dict(m=11, hidden=8, batch_size=16, epochs=6, chunk_epochs=3, seeds=2, wd=[0, 1e-2], lr=1e-2, fourier_every=3)
FLAGS = ["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "6", "--chunk-epochs", "3", "--seeds", "2",
         "--wd", "0,1e-2", "--lr", "1e-2", "--fourier-every", "3", "--quiet"]
EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def command_folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("api") / "command"
    with contextlib.redirect_stdout(io.StringIO()):
        assert sweep.main([*FLAGS, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def api_results(tmp_path_factory) -> grokjax.Results:
    return grokjax.run(**OPTIONS, out=tmp_path_factory.mktemp("api") / "run")


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return dict(data)


@pytest.mark.slow
def test_run_writes_what_the_command_writes(command_folder, api_results):
    folder = api_results.folder
    for name in ("metrics.npz", "fourier.npz", "stages.npz"):
        ours, theirs = npz(folder / name), npz(command_folder / name)
        assert ours.keys() == theirs.keys()
        for key in theirs:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{name}: {key}")
    for name in ("summary.csv", "groups.csv", "delay_fit.json"):
        assert (folder / name).read_text() == (command_folder / name).read_text(), name
    assert {p.name for p in (folder / "figures").iterdir()} == {p.name for p in (command_folder / "figures").iterdir()}
    assert api_results.record["command"].startswith("grokjax.run(m=11, hidden=8")
    # what run() returns is what it wrote
    written = npz(folder / "metrics.npz")
    for name, values in api_results.metrics.items():
        np.testing.assert_array_equal(values, written[name])


def test_run_without_out_writes_nothing_and_takes_a_config(api_results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = SweepConfig(m=11, hidden=8, batch_size=16, epochs=6, chunk_epochs=3, seeds=(0, 1), fourier_every=3)
    results = grokjax.run(config, wd=[0, 1e-2], lr=1e-2)
    assert list(tmp_path.iterdir()) == [] and results.folder is None
    for name, values in api_results.metrics.items():
        np.testing.assert_array_equal(results.metrics[name], values)
    assert results.config == api_results.config
    assert results.record["config"] == api_results.config and "environment" in results.record


@pytest.mark.slow
def test_to_xarray_unstacks_the_runs_into_the_sweep_axes(two_program_folder):
    """The folder of 2 programs (hidden 8, 12) x 2 training fractions x 2 seeds: every
    metric's grid cell is the run of metrics.npz with those coordinates."""
    ds = grokjax.load(two_program_folder).to_xarray()
    assert dict(ds.test_acc.sizes) == {"seed": 2, "hidden": 2, "train_frac": 2, "epoch": 6}
    assert ds.wd.item() == 1e-2 and ds.lr.item() == 1e-2  # one value each: scalar coordinates, as given
    assert list(ds.hidden.values) == [8, 12] and list(ds.train_frac.values) == [0.3, 0.5]
    assert list(ds.epoch.values) == [1, 2, 3, 4, 5, 6]
    stored = npz(two_program_folder / "metrics.npz")
    for run in range(len(stored["seed"])):
        cell = dict(seed=stored["seed"][run], hidden=stored["hidden"][run], train_frac=stored["train_frac"][run])
        for name in ("train_loss", "test_acc", "w1_norm", "node_similarity"):
            np.testing.assert_array_equal(ds[name].sel(cell).values, stored[name][run])
        assert ds.n_train.sel(cell).item() == stored["n_train"][run]
    assert ds.attrs["m"] == 11 and ds.attrs["optimizer"] == "adam" and "hidden" not in ds.attrs
    assert repr(grokjax.load(two_program_folder)) == (f"<grokjax.Results: 8 runs (seed 2 x hidden 2 x train_frac 2 x wd 1 x "
                                                      f"lr 1), 6 epochs, {two_program_folder}>")
    assert ds.attrs["command"].startswith("python -m grokjax.sweep")


def test_median_curves_by_label(command_folder):
    """The README's example: test accuracy at wd 1e-2, median over seeds."""
    ds = grokjax.load(command_folder).to_xarray()
    median = ds.test_acc.sel(wd=1e-2).median("seed")
    stored = npz(command_folder / "metrics.npz")
    chosen = stored["wd"] == np.float32(1e-2)
    assert chosen.sum() == 2
    assert median.dims == ("epoch",)  # a curve
    np.testing.assert_allclose(median.values, np.median(stored["test_acc"][chosen], axis=0), rtol=1e-6)


def test_fourier_snapshots_are_variables_over_snapshot_epochs(command_folder, tmp_path):
    ds = grokjax.load(command_folder).to_xarray()
    stored, metrics = npz(command_folder / "fourier.npz"), npz(command_folder / "metrics.npz")
    assert list(ds.snapshot_epoch.values) == [0, 3, 6] and list(ds.frequency.values) == [1, 2, 3, 4, 5]
    assert dict(ds.spectrum.sizes) == {"seed": 2, "wd": 2, "snapshot_epoch": 3, "neuron": 8, "frequency": 5}
    for run in range(4):
        cell = dict(seed=metrics["seed"][run], wd=[0.0, 1e-2][int(metrics["wd"][run] > 0)])  # wd as given
        for name in ("spectrum", "dominant_frequency", "gini", "gf_norm"):
            np.testing.assert_array_equal(ds[name].sel(cell).values, stored[name][run])
    ds.to_netcdf(tmp_path / "sweep.nc")  # every variable and attribute has a netCDF type
    with xr.open_dataset(tmp_path / "sweep.nc") as back:
        assert back.identical(ds)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def test_summary_and_groups_are_the_csv_files_typed(command_folder):
    results = grokjax.load(command_folder)
    for frame, path in ((results.summary, "summary.csv"), (results.groups, "groups.csv")):
        table = read_csv(command_folder / path)
        assert list(frame.columns) == list(table.columns)
        for column in table.columns:
            if table[column].dtype.kind in "fi" and pd.api.types.is_numeric_dtype(frame[column]):
                ours = frame[column].astype("float64").to_numpy()  # <NA> (not reached) as NaN
                np.testing.assert_allclose(ours, table[column].to_numpy(float), rtol=1e-6, err_msg=column)
            else:  # names; an empty cell reads back as NaN
                assert list(frame[column]) == list(table[column].astype(object).fillna("")), column
    summary = results.summary
    assert summary["grok_epoch"].dtype == "Int64" and summary["grokked"].dtype == bool
    assert summary["seed"].dtype.kind == "i" and summary.loc[summary.wd == 1e-2, "run"].tolist() == [1, 3]
    assert results.runs(wd=1e-2).tolist() == [1, 3] and results.runs(wd=0, seed=1).tolist() == [2]


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)  # as grokjax.results.save_figure
    return buffer.getvalue()


def test_plots_are_the_figures_of_the_folder(command_folder):
    plot = grokjax.load(command_folder).plot
    figures = command_folder / "figures"
    for figure, name in ((plot.overview(), "overview.png"), (plot.delay_vs_wd(), "delay_vs_wd.png"),
                         (plot.dashboard(wd=1e-2), "dashboard_wd0.01_lr0.01.png"),
                         (plot.dashboard(wd=0), "dashboard_wd0_lr0.01.png"),
                         (plot.fourier(wd=1e-2, lr=1e-2), "fourier_wd0.01_lr0.01.png")):
        assert png(figure) == (figures / name).read_bytes(), name
    assert "seed 1 (run 2)" in plot.dashboard(run=2)._suptitle.get_text()
    assert "by the 'readme' rules" in plot.dashboard(run=2, rules="readme")._suptitle.get_text()
    with pytest.raises(ValueError, match="2 groups of this sweep match"):
        plot.dashboard()
    with pytest.raises(ValueError, match="hidden: not an axis"):
        plot.dashboard(hidden=8)
    # the figures over groups hold an axis as report --at does, and say so
    assert plot.delay_vs_wd(at={"wd": 1e-2}).axes[0].get_title().startswith("m=11 add, hidden 8, adam, batch 16 at wd 0.01\n")
    with pytest.raises(ValueError, match=r"at wd=0.5: wd takes 0, 0.01 in this sweep"):
        plot.overview(at={"wd": 0.5})
    assert grokjax.load(command_folder).fits == []  # one weight decay above 0: nothing to fit


def test_load_names_what_is_missing(command_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        grokjax.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="has no config.json: not a grokjax results folder"):
        grokjax.load(tmp_path)
    running = tmp_path / "running"
    shutil.copytree(command_folder, running)
    (running / "metrics.npz").rename(running / "checkpoint.npz")
    with pytest.raises(FileNotFoundError, match=r"its sweep has not finished \(checkpoint.npz there\); continue it with "
                                                r"python -m grokjax.sweep --resume"):
        grokjax.load(running)
    shutil.copy(command_folder / "metrics.npz", running / "metrics.npz")  # killed while writing its results
    with pytest.raises(FileNotFoundError, match=r"its sweep has not finished \(checkpoint.npz there\)"):
        grokjax.load(running)
    (running / "metrics.npz").unlink()
    (running / "checkpoint.npz").unlink()
    with pytest.raises(FileNotFoundError, match="has no metrics.npz: its sweep did not finish, or the file was not kept"):
        grokjax.load(running)
    (running / "config.json").write_text('{"config": {"moduli": [23]}, "command": "python experiments/scaling_law.py"}')
    with pytest.raises(FileNotFoundError, match="has no metrics.npz: it is not a sweep's folder"):
        grokjax.load(running)
    without_fourier = tmp_path / "without-fourier"
    shutil.copytree(command_folder, without_fourier)
    (without_fourier / "fourier.npz").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no fourier.npz, though its sweep took Fourier snapshots"):
        grokjax.load(without_fourier)
    damaged = tmp_path / "damaged"
    shutil.copytree(command_folder, damaged)
    (damaged / "metrics.npz").write_bytes((command_folder / "metrics.npz").read_bytes()[:200])
    with pytest.raises(DamagedFile, match="metrics.npz is not a readable NumPy archive"):
        grokjax.load(damaged)


@pytest.mark.parametrize("flags,options", [
    (["--wd=-1e-4"], dict(wd=-1e-4)),
    (["--hidden", "0"], dict(hidden=0)),
    (["--optimizer", "rmsprop"], dict(optimizer="rmsprop")),
    (["--grokfast", "ema", "--grokfast-alpha", "1.5"], dict(grokfast="ema", grokfast_alpha=1.5)),
    (["--m", "12", "--op", "div"], dict(m=12, op="div")),
])
def test_run_refuses_bad_values_with_the_commands_message(flags, options, tmp_path, capsys):
    with pytest.raises(SystemExit):
        sweep.main([*flags, "--out", str(tmp_path / "command")])
    printed = capsys.readouterr().err.strip()
    with pytest.raises(ValueError) as raised:
        grokjax.run(**options, out=tmp_path / "api")
    assert printed.removeprefix("python -m grokjax.sweep: error: the command line: ") == \
        str(raised.value).removeprefix("grokjax.run: ")
    assert not (tmp_path / "api").exists()


def test_run_refuses_unknown_and_doubled_options(tmp_path):
    with pytest.raises(ValueError, match="grokjax.run: unknown key.s. widht; known keys: .*hidden.*, lr, lrs, "):
        grokjax.run(widht=64)
    with pytest.raises(ValueError, match=r"grokjax.run: wd and wds are one setting \(wds\); give it once"):
        grokjax.run(wd=1e-4, wds=[1e-3])
    toml = tmp_path / "sweep.toml"
    toml.write_text("wd = [-1e-4]\n")
    with pytest.raises(ValueError, match=f"{toml}: wds must be non-negative"):
        grokjax.run(toml)


def test_a_bad_value_leaves_the_folder_to_overwrite_alone(command_folder, tmp_path):
    folder = tmp_path / "earlier"
    shutil.copytree(command_folder, folder)
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ValueError, match="--cpu-devices must be >= 1"):
        grokjax.run(**OPTIONS, out=folder, overwrite=True, cpu_devices=0)
    assert sorted(p.name for p in folder.iterdir()) == before


def made_up_results() -> grokjax.Results:
    """Results of a grid that no test trains: optimizer (names) x hidden 8/12 (padded Fourier
    arrays) x 2 data seeds x 2 seeds, wd given as 3e-5 (no short float32 decimal), 4 epochs."""
    rng = np.random.default_rng(0)
    grid = [(optimizer, hidden, seed, data_seed) for optimizer in ("adamw", "adam") for hidden in (12, 8)
            for seed in (0, 1) for data_seed in (5, 7)]
    coordinates = {"seed": np.array([g[2] for g in grid], np.int32), "data_seed": np.array([g[3] for g in grid], np.int32),
                   "wd": np.full(len(grid), 3.0000001e-5, np.float32), "lr": np.full(len(grid), 1e-3, np.float32),
                   "n_train": np.full(len(grid), 60, np.int32), "optimizer": np.array([g[0] for g in grid]),
                   "hidden": np.array([g[1] for g in grid])}
    metrics = {name: rng.random((len(grid), 4), np.float32) for name in ("train_loss", "train_acc", "test_loss", "test_acc",
                                                                        "w1_norm", "w1_delta_norm")}
    spectrum = rng.random((len(grid), 2, 12, 5)).astype(np.float16)
    spectrum[coordinates["hidden"] == 8, :, 8:] = np.nan
    config = {**SweepConfig(m=11, batch_size=16).to_dict(), "optimizer": ["adamw", "adam"], "hidden": [12, 8], "seeds": [0, 1],
              "data_seeds": [5, 7], "wds": [3.0000001e-5], "lrs": [1e-3], "epochs": 4}
    return grokjax.Results(config, coordinates, metrics, (np.array([0, 4]), {"spectrum": spectrum}))


def test_to_xarray_of_named_axes_padded_fourier_and_data_seeds(tmp_path):
    results = made_up_results()
    ds = results.to_xarray()
    assert dict(ds.test_acc.sizes) == {"seed": 2, "optimizer": 2, "hidden": 2, "data_seed": 2, "epoch": 4}
    assert list(ds.optimizer.values) == ["adam", "adamw"] and list(ds.hidden.values) == [8, 12]  # ascending
    assert ds.wd.item() == 3.0000001e-5  # as given, though float32 stores it as 3.0000001e-05 ~ 3.00000010611e-05
    for run in range(16):
        cell = {name: results.coordinates[name][run] for name in ("seed", "optimizer", "hidden", "data_seed")}
        np.testing.assert_array_equal(ds.w1_norm.sel(cell).values, results.metrics["w1_norm"][run])
        np.testing.assert_array_equal(ds.spectrum.sel(cell).values, results.fourier[1]["spectrum"][run])
    assert np.isnan(ds.spectrum.sel(hidden=8, neuron=slice(8, None))).all()
    assert not np.isnan(ds.spectrum.sel(hidden=12)).any()
    assert "optimizer" not in ds.attrs and ds.attrs["m"] == 11
    ds.to_netcdf(tmp_path / "made-up.nc")
    with xr.open_dataset(tmp_path / "made-up.nc") as back:
        assert back.identical(ds)


@pytest.mark.slow
def test_quickstart_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLES / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    results = quickstart.main(str(tmp_path / "quickstart.png"), m=11, hidden=8, batch_size=16, epochs=6, seeds=2,
                              progress=False)
    assert (tmp_path / "quickstart.png").stat().st_size > 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["wd", "runs", "grokked", "grok_median", "grok_ci_low", "grok_ci_high"]
    assert [line.split()[:2] for line in printed[1:]] == [["0.0000", "2"], ["0.0001", "2"], ["0.0010", "2"]]
    assert len(results.summary) == 6
