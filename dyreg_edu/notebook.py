"""Small helpers the book's chapters share: fast mode, device, provenance, fixtures.

Nothing here runs at import time.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path

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


def cpu_name() -> str:
    """The CPU model and core count, in words."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def describe_device() -> str:
    """The accelerator's name, or the CPU model, in words."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_name()


#: The folders whose changes make a commit ``-dirty`` in :func:`git_commit`.
CODE_DIRS = ("dyreg_edu", "data_gen", "tools")


def git_commit() -> str:
    """The repository's current commit, or ``"unknown"`` outside a git checkout; with ``-dirty``
    appended when the code (``dyreg_edu/``, ``data_gen/``, ``tools/``) differs from that commit,
    so that a result never names a commit whose code is not the code that ran.

    ``DYREG_COMMIT`` names it where the code travels without its ``.git`` (a GPU machine
    that receives a copy of the working tree; the GPU queue's command sets it).
    """
    if os.environ.get("DYREG_COMMIT"):
        return os.environ["DYREG_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_DIRS],
                                 cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    if not commit:
        return "unknown"
    return commit + "-dirty" if changed.returncode == 0 and changed.stdout.strip() else commit


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
    """Display ``results/multisync/<scale>[/<design>]/table<k>.md``, rewritten from the result files
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
