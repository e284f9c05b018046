"""The package's shape: imports run one way, and reading results needs no JAX."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "grokjax"


def grokjax_imports(path: Path) -> set[str]:
    """The grokjax modules a file imports, at the top or inside a function."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("grokjax.")}
        elif isinstance(node, ast.ImportFrom) and node.module == "grokjax":
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("grokjax."):
            imported.add(node.module.split(".")[1])
    return imported


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    visiting, done = [], set()

    def visit(module):
        if module in visiting:
            return visiting[visiting.index(module):] + [module]
        if module in done:
            return None
        visiting.append(module)
        for other in sorted(graph.get(module, ())):
            cycle = visit(other)
            if cycle:
                return cycle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None


def test_no_module_imports_another_in_a_cycle():
    graph = {path.stem: grokjax_imports(path) for path in PACKAGE.glob("*.py")}
    assert graph["crosscheck"] >= {"torch_ref", "train", "driver"}  # imports inside functions are seen
    assert import_cycle(graph) is None


@pytest.mark.slow
def test_report_runs_without_jax(two_program_folder, tmp_path):
    """``python -m grokjax.report`` re-draws a folder, and ``grokjax.load`` reads it, in a
    process where JAX, Flax and optax cannot be imported at all."""
    folder = tmp_path / "run"
    shutil.copytree(two_program_folder, folder)
    shutil.rmtree(folder / "figures")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    for name in ("jax", "jaxlib", "flax", "optax"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('{name} is not available here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(PACKAGE.parent)])}
    done = subprocess.run([sys.executable, "-m", "grokjax.report", str(folder)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (folder / "figures" / "overview.png").exists() and (folder / "groups.csv").exists()
    read = subprocess.run([sys.executable, "-c", f"import grokjax; print(grokjax.load({str(folder)!r}).to_xarray().test_acc.shape)"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "(2, 2, 2, 6)"  # seed, hidden, train_frac, epoch (one wd, one lr)
