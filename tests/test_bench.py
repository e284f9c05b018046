"""python -m grokjax.bench at a tiny size: it runs, and its table's derived columns follow
from its measured ones."""

import pytest

from grokjax import bench


def table_rows(text: str) -> dict[tuple[str, str, str], list[str]]:
    """(loop, devices, runs) -> the row's cells, from the Markdown table."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] not in ("loop",):
            rows[tuple(cells[:3])] = cells
    return rows


@pytest.mark.slow
def test_the_benchmark_runs_and_its_ratios_follow_from_its_times(tmp_path):
    out = tmp_path / "bench.md"
    assert bench.main(["--m", "11", "--hidden", "8", "--batch-size", "16", "--runs", "2", "--epochs", "1",
                       "--repeats", "0", "--torch-epochs", "1", "--out", str(out)]) == 0
    rows = table_rows(out.read_text())
    torch_ms = float(rows[("PyTorch study loop, with metrics", "", "1")][4])
    bare_ms = float(rows[("PyTorch bare loop, no metrics", "", "1")][4])
    assert set(rows) == {
        ("PyTorch study loop, with metrics", "", "1"), ("PyTorch bare loop, no metrics", "", "1"),
        ("grokjax, with metrics", "1", "2"), ("grokjax, steps only", "1", "2"),
        ("grokjax full batch, with metrics", "1", "2"), ("grokjax full batch, steps only", "1", "2"),
    }
    for loop in ("grokjax, with metrics", "grokjax full batch, with metrics"):
        cells = rows[(loop, "1", "2")]
        ms, steps_ms = float(cells[4]), float(rows[(loop.replace("with metrics", "steps only"), "1", "2")][4])
        assert ms > 0 and float(cells[5]) == pytest.approx(1e3 / ms, rel=0.01)
        assert float(cells[6].rstrip(" %")) == pytest.approx(100 * (ms / steps_ms - 1), abs=1.5)
        assert float(cells[7]) == pytest.approx(torch_ms / ms, rel=0.05, abs=0.06)
        assert float(cells[8]) == pytest.approx(bare_ms / ms, rel=0.05, abs=0.06)


def test_the_benchmark_refuses_more_devices_than_there_are(capsys):
    with pytest.raises(SystemExit) as stop:
        bench.main(["--devices", "1,64", "--no-torch"])
    assert stop.value.code == 2 and "this process has 1 device(s)" in capsys.readouterr().err


@pytest.mark.slow
def test_last_position_computation_counts_fewer_flops():
    from grokjax.config import SweepConfig

    config = SweepConfig(model="transformer", m=13, d_model=16, heads=2, d_mlp=64, batch_size=0)
    last, full = bench.gradient_gflops(config), bench.gradient_gflops(config, last_position_only=False)
    # the MLP (most of the FLOPs) at one position of three: close to, but under, 3x
    assert 1.8 < full / last < 3.0
    # by hand, the two MLP matrices' forward and backward at the last position alone: 3 x 2 x 2 x d x d_mlp per pair
    assert last > 3 * 2 * 2 * 16 * 64 * config.n_train / 1e9


@pytest.mark.slow
def test_the_checkpoint_benchmark_counts_what_each_cadence_writes(tmp_path):
    out = tmp_path / "checkpoints.md"
    assert bench.main(["--checkpoints", "--m", "11", "--hidden", "8", "--batch-size", "16", "--runs", "2,4", "--epochs", "1",
                       "--out", str(out)]) == 0
    rows = {cells[0]: cells for cells in (line.strip("|").split("|") for line in out.read_text().splitlines()
                                          if line.startswith("| ") and not line.startswith("| checkpoints"))}
    rows = {label.strip(): [cell.strip() for cell in cells] for label, cells in rows.items()}
    # 10 chunks: one after each but the last; none within 5 minutes; the largest --runs
    assert [rows[label][1] for label in rows] == ["0", "9", "0"] and "4 runs, 10 epochs in chunks of 1" in out.read_text()
    none = float(rows["no checkpoints"][3])
    for cells in rows.values():
        ms = float(cells[3])
        rounding = 100 * ms / none * (0.005 / ms + 0.005 / none) + 0.5  # the table's ms to 2 decimals, % to 0
        assert float(cells[4].rstrip(" %")) == pytest.approx(100 * (ms / none - 1), abs=rounding)
