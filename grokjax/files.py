"""Reading back the files grokjax writes: the one place that turns an unreadable, truncated,
incomplete or inconsistent file into :class:`DamagedFile`, one line naming the file and what
is wrong, which the commands print with exit status 2. NumPy only (no JAX), so that a
command can check a folder before anything heavy starts.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np


class DamagedFile(ValueError):
    """A file grokjax reads back is unreadable, truncated, incomplete or inconsistent; the
    message names the file and what is wrong, in one line."""


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; DamagedFile when it cannot be read or parsed."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as error:
        raise DamagedFile(f"{path}: cannot read it ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFile(f"{path} is not valid JSON ({str(error).splitlines()[0]}); it may be truncated or edited") from None
    if not isinstance(data, dict):
        raise DamagedFile(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def read_npz(path: Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, loaded into memory (no pickles); DamagedFile when it
    cannot be read (truncated, overwritten, not a NumPy archive) or lacks a ``required`` array."""
    def unreadable(detail: str) -> DamagedFile:
        return DamagedFile(f"{path} is not a readable NumPy archive ({detail}); it may be truncated or damaged")

    try:
        with open(path, "rb") as f:
            start = f.read(4)
    except OSError as error:
        raise DamagedFile(f"{path}: cannot read it ({error.strerror or error})") from None
    if start != b"PK\x03\x04":  # anything else np.load would try to read as a pickle
        raise unreadable("it does not start like a .npz file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as error:
        raise unreadable(f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}") from None
    require_arrays(path, arrays, required)
    return arrays


def require_arrays(path: Path, arrays: dict[str, np.ndarray], required: tuple[str, ...]) -> None:
    """DamagedFile unless ``arrays`` (read from ``path``) hold every name of ``required``."""
    missing = [name for name in required if name not in arrays]
    if missing:
        raise DamagedFile(f"{path} lacks {', '.join(missing)}")


def check_shape(path: Path, name: str, array: np.ndarray, leading: tuple[int, ...]) -> None:
    """DamagedFile unless ``array`` (``name`` in ``path``) starts with the dimensions ``leading``."""
    if array.shape[: len(leading)] != tuple(leading):
        raise DamagedFile(f"{path}: {name} has shape {list(array.shape)}; expected it to start with {list(leading)}")
