"""Reading torch files with one clear error (the lowest layer: it imports nothing of dyreg_edu).

A file that is not what the caller expects (a text file, random bytes, a half-written
checkpoint, a checkpoint of another kind) raises one ``ValueError`` that names the file, says
what was expected and what was found; a missing file raises ``FileNotFoundError``.

    state = load_torch_file(path, expected="a dyreg_edu training checkpoint (a dict with 'model' "
                            "and 'config')", keys=("model", "config"))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (since torch 1.6)
PICKLE_MAGIC = b"\x80"  # the legacy format starts with a pickle protocol byte


def not_expected(source: Any, expected: str, found: str) -> ValueError:
    """The one error: ``'<source>: expected <expected>; found <found>'``."""
    return ValueError(f"{source}: expected {expected}; found {found}")


def describe(obj: Any) -> str:
    """A few words on a loaded object: ``"a dict with keys ['a', 'b']"`` or ``"a list"``."""
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:8]]
        more = f" and {len(obj) - 8} more" if len(obj) > 8 else ""
        return f"a dict with keys {keys}{more}" if obj else "an empty dict"
    return f"a {type(obj).__name__}"


def check_keys(obj: Any, keys: tuple[str, ...] = (), *, source: Any, expected: str) -> dict:
    """``obj`` as a dict if it is a mapping holding every one of ``keys``, else the one ``ValueError``.

    ``source`` names where ``obj`` came from (a path, or e.g. ``"the given checkpoint"``).
    """
    if not isinstance(obj, Mapping):
        raise not_expected(source, expected, describe(obj))
    missing = [k for k in keys if k not in obj]
    if missing:
        raise not_expected(source, expected, f"{describe(obj)}, without {missing}")
    return dict(obj)


def _what_file(path: Path, error: Exception, weights_only: bool) -> str:
    """What a file that ``torch.load`` could not read looks like, in a few words."""
    head = path.read_bytes()[:512]
    if not head:
        return "an empty file"
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC):
        if weights_only and "weights_only" in str(error):
            return ("a torch file with Python objects besides tensors (if you trust it, load it with "
                    "weights_only=False)")
        return "a truncated or damaged torch file (half-written?)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised bytes, not a torch file"
    return "a text file, not a torch file"


def load_torch_file(path: str | os.PathLike, *, expected: str, keys: tuple[str, ...] = (),
                    weights_only: bool = True) -> dict:
    """The dict saved in ``path`` (``torch.save``), loaded on the CPU.

    Args:
        path: the file.
        expected: what it should hold, in words, for the error (``"the authors' checkpoint ..."``).
        keys: entries the dict must have.
        weights_only: ``torch.load``'s safe mode; ``False`` only for a file you trust.

    Raises ``FileNotFoundError`` for a missing file and one ``ValueError`` naming the file,
    ``expected`` and what was found for anything else.
    """
    path = Path(path)
    if path.is_dir():
        raise not_expected(path, expected, "a folder")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected {expected})")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as error:  # torch.load raises a dozen types for a bad file
        raise not_expected(path, expected, _what_file(path, error, weights_only)) from None
    return check_keys(obj, keys, source=path, expected=expected)
