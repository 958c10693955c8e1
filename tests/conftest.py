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
