"""What every ``python -m grokjax.*`` command shares: an argument parser whose errors are
one line, and the types of flags that take comma-separated lists."""

from __future__ import annotations

import argparse


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit status 2), not the usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def float_list(text: str) -> tuple[float, ...]:
    """``1e-4,3e-4`` -> (0.0001, 0.0003)."""
    try:
        return tuple(float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def int_list(text: str) -> tuple[int, ...]:
    """``64,128`` -> (64, 128)."""
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def name_list(text: str) -> tuple[str, ...]:
    """Comma-separated names; each is checked against its choices with the configuration."""
    return tuple(item.strip() for item in text.split(","))
