"""Writing output files atomically: a gradebook is either complete or absent, never half written."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from grader.errors import InputError


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("folder does not exist", str(folder))
    if path.is_dir():
        raise InputError("is a folder: give a file name for the output", str(path))
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as exc:
        raise InputError(f"cannot write here: {exc.strerror}", str(folder)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise InputError(f"cannot write: {exc.strerror}", str(path)) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
