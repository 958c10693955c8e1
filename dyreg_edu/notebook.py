"""Small helpers the book's chapters share: fast mode, device, provenance, fixtures.

Nothing here runs at import time.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from .runs import cpu_name, describe_device, git_commit  # noqa: F401  (the chapters' provenance)

FAST_ENV = "DYREG_FAST"
SHARED_ENV = "DYREG_SHARED"
REPO_ROOT = Path(__file__).resolve().parent.parent


def fast_mode() -> bool:
    """True when the environment variable ``DYREG_FAST`` is ``1`` (tests shrink sizes then)."""
    value = os.environ.get(FAST_ENV, "0").strip().lower()
    if value not in ("", "0", "1", "true", "false"):
        raise ValueError(f"{FAST_ENV} must be 0 or 1, got {value!r}")
    return value in ("1", "true")


def pick(full, fast):
    """``fast`` in fast mode, else ``full``: ``steps = pick(300, 20)``."""
    return fast if fast_mode() else full


def device():
    """The torch device a chapter should use: CUDA when present, else CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def provenance() -> dict:
    """What produced a chapter's outputs: commit, device, date, library versions, fast mode."""
    import torch

    return {
        "commit": git_commit(),
        "device": describe_device(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "fast_mode": fast_mode(),
    }


def fixtures_dir() -> Path | None:
    """Where the authors' golden tensors are: ``$DYREG_SHARED/fixtures/official`` or
    ``<repo>/../shared/fixtures/official``; ``None`` when absent (e.g. in Colab)."""
    shared = Path(os.environ.get(SHARED_ENV, REPO_ROOT.parent / "shared"))
    path = shared / "fixtures" / "official"
    return path if path.is_dir() else None


#: The one golden file shipped with the library (``dyreg_edu/fixtures/``, see its NOTICE.md).
BUNDLED_FIXTURE = "synthetic_block_small.pt"


def bundled_fixture() -> Path:
    """The authors' small golden file shipped inside ``dyreg_edu`` (2.3 MB, Apache-2.0):
    chapter 4's equality check runs from it in a plain clone and in Colab."""
    path = Path(__file__).resolve().parent / "fixtures" / BUNDLED_FIXTURE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall dyreg_edu (it ships with the package)")
    return path


def show_table(table: str, scale: str = "mini", **design) -> None:
    """Display ``table<k>.md`` of :func:`~dyreg_edu.ablations.results_dir` (``results/multisync[/mini]``, another
    design's ``results/research/design_<tag>``), rewritten from the result files
    (``design``: the settings of a design other than the committed one, e.g. ``digit_size=14``);
    says so when the table has no results yet. Chapters 7 and 11 show their tables with it."""
    from IPython.display import Markdown, display

    from . import ablations

    folder = ablations.results_dir(scale, **design)
    path = ablations.write_table(table, scale, **design) if folder.exists() else folder / f"table{table}.md"
    if not path.exists():
        print(f"no results for table {table} at the {scale} scale yet")
        return
    display(Markdown(path.read_text().replace("# ", "**", 1).replace("\n", "**\n", 1)))
