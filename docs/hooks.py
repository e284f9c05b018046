"""What the documentation site computes when it is built, so that it cannot drift from the code:

- the command-line reference, rendered from each ``python -m grokjax.*`` command's own argparse
  parser (a line ``<!-- cli: grokjax.sweep -->`` in a page becomes that command's flags);
- the results folders, served beside the pages (each folder's README.md becomes a page, its
  figures and tables files), so that the gallery and the claims ledger link to the evidence;
- a check that every public object the API reference renders has a docstring, and that every
  command and every name ``grokjax`` exports is in the reference.

Anything missing is logged as a warning, which ``mkdocs build --strict`` turns into a failure.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.plugins.grokjax")
ROOT = Path(__file__).resolve().parent.parent
CLI_MARKER = re.compile(r"^<!-- cli: (grokjax\.\w+) -->$", re.MULTILINE)
API_DIRECTIVE = re.compile(r"^::: ([\w.]+)", re.MULTILINE)
# served from results/: what a reader opens; metrics.npz and other arrays stay in the repository
RESULT_SUFFIXES = {".md", ".png", ".csv", ".json", ".txt"}


def commands() -> list[str]:
    """Every ``python -m grokjax.*`` command: the package's modules with a ``build_parser``."""
    return sorted(f"grokjax.{path.stem}" for path in (ROOT / "grokjax").glob("*.py")
                  if re.search(r"^def build_parser\(", path.read_text(), re.MULTILINE))


def escape(text: str) -> str:
    """Help text as literal Markdown inside a table cell."""
    text = re.sub(r"([\\`*_\[\]|])", r"\\\1", text)
    return text.replace("<", "&lt;").replace(">", "&gt;")


def parser_markdown(parser: argparse.ArgumentParser, heading: str) -> str:
    """One parser as a usage block and one table per argument group, each row's text as --help prints it."""
    formatter = parser._get_formatter()
    lines = [f"{heading} `{parser.prog}`", "", "```", parser.format_usage().strip(), "```", ""]
    if parser.description:
        lines += [escape(parser.description), ""]
    subcommands = []
    for group in parser._action_groups:
        rows = []
        for action in group._group_actions:
            if isinstance(action, argparse._SubParsersAction):
                subcommands += list(action.choices.values())
                continue
            invocation = formatter._format_action_invocation(action)
            rows.append(f"| `{invocation}` | {escape(formatter._expand_help(action) if action.help else '')} |")
        if rows:
            lines += [f"**{group.title}**", "", "| flag | meaning |", "|---|---|", *rows, ""]
    for sub in subcommands:
        lines.append(parser_markdown(sub, heading + "#"))
    return "\n".join(lines)


def cli_reference(module: str) -> str:
    return parser_markdown(importlib.import_module(module).build_parser(), "###")


def undocumented(path: str) -> list[str]:
    """The object at ``path`` and its public members that have no docstring."""
    module, _, name = path.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        obj = importlib.import_module(path)
    missing = [] if inspect.getdoc(obj) else [path]
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        for member, value in vars(obj).items():
            if member.startswith("_") or member in getattr(obj, "__dataclass_fields__", {}):
                continue
            doc = getattr(value, "__doc__", None) or getattr(getattr(value, "func", None), "__doc__", None)
            if not doc:
                missing.append(f"{path}.{member}")
    return missing


def on_files(files, config):
    for path in sorted((ROOT / "results").rglob("*")):
        if path.is_file() and path.suffix in RESULT_SUFFIXES:
            files.append(File(str(path.relative_to(ROOT)), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    shown = set(CLI_MARKER.findall(markdown))
    if page.file.src_uri == "reference/cli.md":
        for module in sorted(set(commands()) - shown):
            log.warning(f"reference/cli.md: the command python -m {module} has no '<!-- cli: {module} -->' line")
    if page.file.src_uri == "reference/api.md":
        import grokjax

        rendered = set(API_DIRECTIVE.findall(markdown))
        for name in grokjax.__all__:
            if f"grokjax.{name}" not in rendered and f"grokjax.api.{name}" not in rendered:
                log.warning(f"reference/api.md: grokjax.{name} is exported but not documented")
        for path in sorted(rendered):
            for missing in undocumented(path):
                log.warning(f"reference/api.md: {missing} has no docstring")
    return CLI_MARKER.sub(lambda match: cli_reference(match.group(1)), markdown)
