"""The documentation against the code: every results folder has a gallery entry, every flag of
every command is in the reference, every command line in the docs is one the commands accept,
and the examples the guides include run (at a tiny size)."""

import importlib.util
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grokjax import sweep
from grokjax.results import METRIC_NAMES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_module(DOCS / "hooks.py", "grokjax_docs_hooks")
# a task that trains in a second: the examples' calls unchanged but for these
TINY_RUN = dict(m=11, hidden=8, batch_size=16, epochs=6, chunk_epochs=3, progress=False)


def test_every_results_folder_has_a_gallery_entry():
    gallery = (DOCS / "gallery.md").read_text()
    folders = sorted(path.name for path in (ROOT / "results").iterdir() if path.is_dir())
    assert len(folders) >= 18
    missing = [name for name in folders if f"](results/{name}/README.md)" not in gallery]
    assert not missing, f"results folders without a gallery entry: {missing}"


def test_every_flag_of_every_command_is_in_the_cli_reference():
    commands = hooks.commands()
    assert commands == ["grokjax.bench", "grokjax.crosscheck", "grokjax.export", "grokjax.report", "grokjax.sweep"]
    page = (DOCS / "reference" / "cli.md").read_text()
    for module in commands:
        assert f"<!-- cli: {module} -->" in page, module
        parser = importlib.import_module(module).build_parser()
        rendered = hooks.cli_reference(module)
        parsers = [parser, *(sub for action in parser._actions if hasattr(action, "choices") and isinstance(action.choices, dict)
                             for sub in action.choices.values())]
        for each in parsers:
            for action in each._actions:
                for option in action.option_strings:
                    assert f"`{option}" in rendered or f", {option}" in rendered, (module, option)
    assert "| `--train-frac TRAIN_FRAC` | comma-separated fractions of all pairs used for training" in hooks.cli_reference("grokjax.sweep")


def test_the_api_check_finds_a_missing_docstring(monkeypatch):
    assert hooks.undocumented("grokjax.api.Plots") == []
    monkeypatch.setattr(hooks.importlib.import_module("grokjax.api").Plots.overview, "__doc__", None)
    assert hooks.undocumented("grokjax.api.Plots") == ["grokjax.api.Plots.overview"]


def documented_command_lines() -> list[tuple[str, str, list[str]]]:
    """(where, command, arguments) of every ``python -m grokjax.*`` line in the README, the
    docs pages and the SLURM example (the shell examples run in tests of their own),
    continuation lines joined, comments and pipes cut off."""
    sources = [ROOT / "README.md", *DOCS.rglob("*.md"), *EXAMPLES.glob("*.sbatch")]
    found = []
    for path in sources:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        for match in re.finditer(r"python -m grokjax\.(\w+)((?=[ `\n])[^`\n]*)", text):
            arguments = re.split(r"\s(?:#|&&|\||;|>)", match.group(2))[0]
            found.append((path.relative_to(ROOT).as_posix(), match.group(1), shlex.split(arguments)))
    return found


def test_every_command_line_in_the_docs_is_accepted():
    lines = documented_command_lines()
    assert len(lines) > 40 and {command for _, command, _ in lines} >= {"sweep", "report", "export", "crosscheck", "bench"}
    for where, command, arguments in lines:
        if not arguments or "--help" in arguments:  # the command named, not run
            continue
        parser = importlib.import_module(f"grokjax.{command}").build_parser()
        try:
            args = parser.parse_args(arguments)
            if command == "sweep" and not (args.resume or args.config):
                sweep.resolve(args)  # the configuration is valid too, not just the flags' syntax
        except SystemExit as error:
            pytest.fail(f"{where}: python -m grokjax.{command} {shlex.join(arguments)} is refused (exit {error.code})")
        except ValueError as error:
            pytest.fail(f"{where}: python -m grokjax.{command} {shlex.join(arguments)}: {error}")


def test_a_wrong_flag_in_the_docs_would_be_caught():
    parser = sweep.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--weight-decay", "1e-4"])
    with pytest.raises(ValueError):
        sweep.resolve(parser.parse_args(["--op", "div", "--m", "96"]))


def test_the_examples_the_guides_include_exist():
    for page in DOCS.rglob("*.md"):
        for included in re.findall(r'--8<-- "([^"]+)"', page.read_text()):
            assert (ROOT / included).is_file(), (page, included)


@pytest.mark.slow
def test_every_python_block_in_the_docs_runs(monkeypatch):
    """The guides' inline Python (the examples they include run in tests of their own), each
    sweep at a tiny size: the same calls, a smaller task."""
    import matplotlib.pyplot as plt

    import grokjax

    blocks = [(page, code) for page in sorted(DOCS.rglob("*.md"))
              for code in re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL) if "--8<--" not in code]
    assert len(blocks) >= 2
    run = grokjax.run
    monkeypatch.setattr(grokjax, "run", lambda *args, **options: run(*args, **{**options, **TINY_RUN}))
    monkeypatch.chdir(ROOT)  # the blocks read committed results folders by their relative paths
    for page, code in blocks:
        try:
            exec(compile(code, str(page), "exec"), {})
        finally:
            plt.close("all")


def test_train_fraction_example_runs(tmp_path):
    example = load_module(EXAMPLES / "train_fraction.py", "train_fraction")
    results = example.main(str(tmp_path / "train_frac.png"), **TINY_RUN, seeds=2, train_frac=[0.4, 0.6])
    assert (tmp_path / "train_frac.png").stat().st_size > 0
    assert sorted(set(results.summary.train_frac)) == [0.4, 0.6] and len(results.summary) == 4


@pytest.mark.slow
def test_two_process_example_trains_one_sweep_and_process_0_merges(tmp_path):
    """examples/two_processes.sh, the multi-host recipe on one machine: two processes, one
    sweep, merged by process 0 into what one process trains alone."""
    tiny = ["--m", "11", "--hidden", "8", "--batch-size", "16", "--epochs", "6", "--seeds", "2", "--wd", "0,1e-2", "--quiet",
            "--fourier-every", "3"]
    alone = tmp_path / "alone"
    assert subprocess.run([sys.executable, "-m", "grokjax.sweep", *tiny, "--cpu-devices", "1", "--out", str(alone)],
                          timeout=300).returncode == 0
    out = tmp_path / "together"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "GROKJAX_PORT": str(free_port())}
    done = subprocess.run(["bash", str(EXAMPLES / "two_processes.sh"), str(out), *tiny], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "process 1: wrote its 2 runs" in done.stdout
    assert not list(out.glob("shard-*.npz"))  # merged and removed
    merged, single = np.load(out / "metrics.npz"), np.load(alone / "metrics.npz")
    for name in METRIC_NAMES:
        # feature_diversity reads the small singular values of a [16, 8] float32 matrix, which
        # amplify the round-off by which the features of a 2-run and of a 4-run program differ
        # (measured: 1.8e-4 relative at one epoch); everything else agrees to 1e-5
        tolerance = dict(rtol=1e-3) if name == "feature_diversity" else dict(rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(merged[name], single[name], err_msg=name, **tolerance)
    merged, single = np.load(out / "fourier.npz"), np.load(alone / "fourier.npz")  # the snapshots are merged too
    assert sorted(merged.files) == sorted(single.files) and merged["gini"].shape == (4, 3)
    for name in single.files:
        np.testing.assert_allclose(merged[name], single[name], rtol=1e-3, atol=1e-3, err_msg=name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]
