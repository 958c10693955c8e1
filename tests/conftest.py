"""Shared pytest set-up for the dyreg-edu test suite.

Fixtures from the authors' code live outside the repository, in
``<repo>/../shared/fixtures/official/``; set ``DYREG_SHARED`` to point elsewhere.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # import dyreg_edu, data_gen, tools from the working tree
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("MPLBACKEND", "Agg")  # no display in tests

SHARED_DIR = Path(os.environ.get("DYREG_SHARED") or REPO_ROOT.parent / "shared").resolve()
OFFICIAL_FIXTURES = SHARED_DIR / "fixtures" / "official"


def _missing(what: Path):
    """Skip on a reader's machine (or GitHub) without ../shared; fail where it must exist
    (``DYREG_REQUIRE_SHARED=1``, which ``.ci/run`` sets)."""
    msg = f"{what} not found; set DYREG_SHARED to the folder that holds fixtures/official"
    if os.environ.get("DYREG_REQUIRE_SHARED") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``$DYREG_SHARED``, default ``<repo>/../shared``."""
    if not SHARED_DIR.is_dir():
        _missing(SHARED_DIR)
    return SHARED_DIR


@pytest.fixture(scope="session")
def official_dir() -> Path:
    """``<shared>/fixtures/official``: state dicts and outputs of the authors' modules."""
    if not OFFICIAL_FIXTURES.is_dir():
        _missing(OFFICIAL_FIXTURES)
    return OFFICIAL_FIXTURES


def write_bad_torch_files(folder: Path) -> dict[str, Path]:
    """Four files that are not the checkpoint a loader expects, as a new user might pass them:
    ``text`` (a text file), ``random_bytes``, ``truncated`` (a valid ``torch.save`` file cut to
    half its bytes) and ``other_kind`` (a torch file holding a dict without any key the loaders
    of dyreg_edu expect: no ``state_dict``, ``model``, ``config``, no ``dynamic_graph.*``)."""
    import random

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.pt" for name in ("text", "random_bytes", "truncated", "other_kind")}
    files["text"].write_text("epoch 3, accuracy 0.61\nnot a checkpoint\n")
    files["random_bytes"].write_bytes(random.Random(0).randbytes(4096))
    torch.save({"state_dict": {"weight": torch.randn(64, 64)}, "config": {"lr": 0.1}}, files["truncated"])
    data = files["truncated"].read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    torch.save({"epoch": 3, "arch": "resnet50", "weights": {"fc.weight": torch.zeros(2, 2)}}, files["other_kind"])
    return files


@pytest.fixture
def bad_torch_files(tmp_path) -> dict[str, Path]:
    """:func:`write_bad_torch_files` in the test's ``tmp_path`` (``bad_files/``)."""
    return write_bad_torch_files(tmp_path / "bad_files")
