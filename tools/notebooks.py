"""Chapter-notebook tooling for the dyreg-edu book.

    python tools/notebooks.py sync-colab [NOTEBOOK ...]   # badge + Colab setup cell
    python tools/notebooks.py execute    [NOTEBOOK ...]   # full-size run, outputs stored
    python tools/notebooks.py check      [NOTEBOOK ...]   # what the book and CI expect
    python tools/notebooks.py student    [NOTEBOOK ...]   # the student edition, _build/student/

With no NOTEBOOK, each command works on every notebook listed in ``_toc.yml``.

Every chapter starts (after its title cell, a markdown cell beginning with
``# Title``, if it has one) with two cells that this tool owns and rewrites:

1. a markdown cell (tags ``colab-badge``, ``remove-cell``) with an "Open in Colab"
   badge. ``remove-cell`` keeps it out of the HTML book, which has its own launch
   button; in Jupyter, Colab and on GitHub it shows.
2. a short, visible code cell (tag ``colab-setup``) that installs this repository's
   package with pip, and only when it runs inside Google Colab.

The repository URL is read from ``repository.url`` in ``_config.yml``: that is the
only place it is written by hand.
"""
from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from pathlib import Path

import nbformat
from nbformat.v4.nbbase import random_cell_id
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]

BADGE_TAG = "colab-badge"
SOLUTION_TAG = "solution"   # a hidden solution cell; the student edition drops it
STUDENT_DIR = Path("_build") / "student"
STUB_MARK = "raise NotImplementedError"
CHECK_PASSED = "Passed:"
# A solution written in a markdown cell: a MyST dropdown titled "Solution".
DROPDOWN_SOLUTION = re.compile(r"^(?P<fence>`{3,}|:{3,})\{dropdown\}[ \t]*Solution.*?^(?P=fence)[ \t]*$\n?",
                               re.MULTILINE | re.DOTALL)
SETUP_TAG = "colab-setup"
# What a forgotten ``f`` before a string leaves: ``{name}``, ``{name:.2f}``, ``{row['x']!r}`` in plain text.
# Not LaTeX (``\frac{a}{b}``, ``x_{i}``, ``\mathbf{x}``: a brace right after a letter, ``\``, ``^``, ``_`` or
# another brace), a MyST role (``{ref}`...```), a substitution (``{{ name }}``), a dict or a set (``{'a': 1}``,
# ``{1, 2}``: no identifier right after the brace), nor an f-string in printed source code; maths and code
# are taken out first (:func:`prose`).
PLACEHOLDER = re.compile(r"(?<![\\\w^_{}$])\{[A-Za-z_]\w*(?:\.\w+|\[[^\]\n]*\])*(?:![rsa])?(?::[^{}\s]*)?\}(?![}`])")
_FENCED = re.compile(r"^(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$",
                     re.MULTILINE | re.DOTALL)
_ROLE = re.compile(r"\{[\w:-]+\}(?=`)")
_MATHS = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)[^`].*?\1", re.DOTALL)
_F_STRING = re.compile(r"""\b[rRbB]?[fF][rRbB]?(?:(?P<q>"{3}|'{3}).*?(?P=q)|"[^"\n]*"|'[^'\n]*')""", re.DOTALL)
COLAB_URL = "https://colab.research.google.com"
BADGE_IMG = f"{COLAB_URL}/assets/colab-badge.svg"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
#: The package extras (pyproject.toml) that a chapter's Colab setup installs beyond the package itself.
SETUP_EXTRAS = {"09_something_something": ("video",)}  # PyAV, to decode the webm clips


# ---------------------------------------------------------------------------
# Configuration and table of contents
# ---------------------------------------------------------------------------

def load_config(root: Path = REPO_ROOT) -> dict:
    with open(Path(root) / "_config.yml", encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def repository(root: Path = REPO_ROOT) -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``; the URL without a trailing slash or .git."""
    repo = load_config(root).get("repository") or {}
    url = str(repo.get("url", "")).strip().rstrip("/")
    if url.endswith(".git"):
        url = url[: -len(".git")]
    if not re.match(r"^https://github\.com/[^/]+/[^/]+$", url):
        raise ValueError(f"_config.yml repository.url must be https://github.com/<owner>/<repo>, got {url!r}")
    return url, str(repo.get("branch", "main"))


def _toc_files(entry) -> list[str]:
    files: list[str] = []
    if isinstance(entry, dict):
        if "file" in entry:
            files.append(str(entry["file"]))
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key) or []:
                files.extend(_toc_files(child))
    elif isinstance(entry, list):
        for child in entry:
            files.extend(_toc_files(child))
    return files


def toc_documents(root: Path = REPO_ROOT) -> list[str]:
    """Every document of ``_toc.yml`` in reading order, as written there (no suffix)."""
    with open(Path(root) / "_toc.yml", encoding="utf-8") as f:
        toc = yaml.safe_load(f) or {}
    docs = [str(toc["root"])] if "root" in toc else []
    docs += _toc_files(toc)
    return [re.sub(r"\.(ipynb|md)$", "", d) for d in docs]


def toc_notebooks(root: Path = REPO_ROOT) -> list[Path]:
    """The TOC documents whose source is a notebook (``.ipynb``), in reading order.

    A TOC entry with no source file at all is returned as its ``.ipynb`` path so that
    ``check`` reports it missing.
    """
    root = Path(root)
    out = []
    for doc in toc_documents(root):
        nb, md = root / f"{doc}.ipynb", root / f"{doc}.md"
        if nb.exists() or not md.exists():
            out.append(nb)
    return out


# ---------------------------------------------------------------------------
# The two Colab cells
# ---------------------------------------------------------------------------

def colab_link(path: Path, root: Path = REPO_ROOT) -> str:
    url, branch = repository(root)
    rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    return f"{COLAB_URL}/github/{url.split('github.com/', 1)[1]}/blob/{branch}/{rel}"


def badge_source(path: Path, root: Path = REPO_ROOT) -> str:
    return f'<a href="{colab_link(path, root)}" target="_parent"><img src="{BADGE_IMG}" alt="Open In Colab"/></a>'


def setup_source(root: Path = REPO_ROOT, path: Path | None = None) -> str:
    """The setup cell of the chapter at ``path``: it installs the package with the chapter's extras (SETUP_EXTRAS)."""
    url, branch = repository(root)
    extras = SETUP_EXTRAS.get(Path(path).stem, ()) if path is not None else ()
    target = f'CLONE + "[{",".join(extras)}]"' if extras else "CLONE"
    return (
        "# Setup. In Google Colab this clones the book's repository (the library, the trained\n"
        "# checkpoints and the result files that chapters load) and installs its packages;\n"
        "# anywhere else (make book, make test) all of it is already here and nothing happens.\n"
        "import os\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        f'REPOSITORY, CLONE = "{url}", "/content/dyreg-edu"\n'
        'if "google.colab" in sys.modules:\n'
        "    if not os.path.isdir(CLONE):\n"
        f'        subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "{branch}", REPOSITORY, CLONE], check=True)\n'
        f'        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", {target}], check=True)\n'
        "    sys.path.insert(0, CLONE)\n"
        '    os.chdir(os.path.join(CLONE, "book"))\n'
        "\n"
        "import torch  # where this chapter's tensors will live: a GPU when the runtime has one\n"
        "\n"
        'DEVICE = "cuda" if torch.cuda.is_available() else "cpu"\n'
        'print(f"torch {torch.__version__}, device: "\n'
        '      + (f"cuda ({torch.cuda.get_device_name()})" if DEVICE == "cuda" else "cpu (no GPU; in Colab: Runtime > Change runtime type)"))'
    )


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _owned(cell) -> bool:
    return bool({BADGE_TAG, SETUP_TAG} & set(_tags(cell)))


def _is_title(cell) -> bool:
    """A markdown cell that opens with the chapter's level-1 heading stays on top."""
    return cell.cell_type == "markdown" and not _owned(cell) and cell.source.lstrip().startswith("# ")


def _reuse_or_make(old, new):
    """Keep the old cell (id, outputs, execution count) when its source is already right."""
    if old is not None and old.cell_type == new.cell_type and old.source == new.source \
            and set(_tags(new)) <= set(_tags(old)):
        return old
    return new


def sync_notebook(nb, path: Path, root: Path = REPO_ROOT):
    """Return a copy of ``nb`` that starts with the badge cell and the setup cell."""
    nb = copy.deepcopy(nb)
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):  # cell ids arrived in 4.5
        nb.nbformat, nb.nbformat_minor = 4, 5
        for cell in nb.cells:
            cell.setdefault("id", random_cell_id())
    old_badge = next((c for c in nb.cells if BADGE_TAG in _tags(c)), None)
    old_setup = next((c for c in nb.cells if SETUP_TAG in _tags(c)), None)
    badge = nbformat.v4.new_markdown_cell(badge_source(path, root), id=BADGE_TAG,
                                          metadata={"tags": [BADGE_TAG, "remove-cell"]})
    setup = nbformat.v4.new_code_cell(setup_source(root, path), id=SETUP_TAG,
                                      metadata={"tags": [SETUP_TAG]})
    rest = [c for c in nb.cells if not _owned(c)]
    head = [rest.pop(0)] if rest and _is_title(rest[0]) else []
    nb.cells = head + [_reuse_or_make(old_badge, badge), _reuse_or_make(old_setup, setup)] + rest
    return nb


def normalize_metadata(nb):
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.setdefault("language_info", {"name": "python"})
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # per-cell timings: noise in diffs
        cell.metadata.pop("ExecuteTime", None)
    return nb


def _read(path: Path):
    return nbformat.read(str(path), as_version=4)


def _write(nb, path: Path) -> None:
    nbformat.validate(nb)
    nbformat.write(nb, str(path))


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------

def sync_colab(paths, root: Path = REPO_ROOT) -> list[Path]:
    """Rewrite the badge and setup cells; returns the notebooks that changed."""
    changed = []
    for path in paths:
        nb = _read(path)
        new = sync_notebook(nb, path, root)
        if new != nb:
            _write(new, path)
            changed.append(path)
    return changed


def execute(paths, timeout: int = 3600, fast: bool = False) -> None:
    """Run each notebook top to bottom in a fresh python3 kernel, cwd = its folder
    (book/), and store the outputs and widget state in place."""
    from nbclient import NotebookClient

    if fast:
        os.environ["DYREG_FAST"] = "1"
    elif os.environ.pop("DYREG_FAST", None) not in (None, "", "0"):
        print("note: DYREG_FAST was set; executing at full size anyway (use --fast to keep it)")
    for path in paths:
        path = Path(path)
        print(f"executing {path} ...", flush=True)
        nb = normalize_metadata(_read(path))
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent.resolve())}},
                                store_widget_state=True, record_timing=False)
        client.execute()
        _write(normalize_metadata(nb), path)


def check_notebook(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """Everything wrong with one chapter notebook, as readable sentences."""
    path = Path(path)
    try:
        name = path.resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        name = str(path)
    if not path.exists():
        return [f"{name}: listed in _toc.yml but the file does not exist"]
    nb = _read(path)
    problems = []
    cells = nb.cells[1:] if nb.cells and _is_title(nb.cells[0]) else nb.cells
    if not cells or cells[0].cell_type != "markdown" or BADGE_TAG not in _tags(cells[0]):
        problems.append(f"{name}: the first cell (after the title) must be the Colab badge (run: python tools/notebooks.py sync-colab)")
    elif cells[0].source != badge_source(path, root):
        problems.append(f"{name}: the Colab badge does not match _config.yml repository.url (run sync-colab)")
    if len(cells) < 2 or cells[1].cell_type != "code" or SETUP_TAG not in _tags(cells[1]):
        problems.append(f"{name}: the cell after the badge must be the Colab setup cell (run: python tools/notebooks.py sync-colab)")
    elif cells[1].source != setup_source(root, path):
        problems.append(f"{name}: the Colab setup cell does not match _config.yml repository.url (run sync-colab)")

    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"{name}: kernelspec name is {kernel!r}, expected 'python3'")

    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    unexecuted = [i for i, c in code if c.get("execution_count") is None]
    if unexecuted:
        problems.append(f"{name}: code cells {unexecuted} have no stored outputs (run: make notebooks)")
    counts = [c.execution_count for _, c in code if c.get("execution_count") is not None]
    if counts and counts != sorted(counts):
        problems.append(f"{name}: cells were executed out of order {counts}; re-run top to bottom (make notebooks)")
    if code and not any(c.get("outputs") for _, c in code):
        problems.append(f"{name}: no code cell has any stored output (run: make notebooks)")
    for i, c in code:
        for out in c.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"{name}: cell {i} stores an error output ({out.get('ename')}: {out.get('evalue')})")
    problems += exercise_problems(nb, name)
    problems += placeholder_problems(nb, name)
    widgets = nb.metadata.get("widgets")
    if widgets is not None:
        state = widgets.get("application/vnd.jupyter.widget-state+json", {})
        if "state" not in state:
            problems.append(f"{name}: widget metadata without a 'state' key (save widget state, or drop metadata.widgets)")
    return problems


def prose(markdown: str) -> str:
    """``markdown`` without what may hold braces on purpose: fenced code (a MyST directive's body stays,
    its fences and ``{name}`` go), roles, inline code, maths."""
    text, before = markdown, None
    while text != before:  # a directive's body may hold fences of its own
        before = text
        text = _FENCED.sub(lambda m: m.group("body") if m.group("info").lstrip().startswith("{") else "", text)
    text = _CODE_SPAN.sub("", _ROLE.sub("", _MATHS.sub("", text)))
    return _F_STRING.sub("", text)


def placeholders(text: str) -> list[str]:
    """The unfilled ``{name}`` placeholders in ``text`` (markdown prose or a printed output)."""
    return PLACEHOLDER.findall(prose(text))


def placeholder_problems(nb, name: str) -> list[str]:
    """An unfilled ``{name}`` in a markdown cell or in a stored text output (stream, plain text,
    markdown display): an f-string without its ``f``, or a template that was never formatted."""
    problems = []
    for i, cell in enumerate(nb.cells):
        texts = [cell.source] if cell.cell_type == "markdown" else []
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "stream":
                texts.append("".join(out.get("text", "")))
            for mime in ("text/plain", "text/markdown"):
                texts.append("".join(out.get("data", {}).get(mime, "")))
        found = sorted({p for text in texts for p in placeholders(text)})
        if found:
            where = "markdown" if cell.cell_type == "markdown" else "output of code"
            problems.append(f"{name}: {where} cell {i} shows unfilled placeholders {found} (an f-string without its f?)")
    return problems


def exercises(nb) -> list[tuple[int, int | None, int | None]]:
    """The implementation exercises of a notebook: ``(stub, solution, check)`` cell indices.

    A stub is a code cell that is not a solution and contains ``raise NotImplementedError``;
    its solution is the next cell tagged ``solution``, its check the next code cell after
    that which calls ``check(``.
    """
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or SOLUTION_TAG in _tags(cell) or STUB_MARK not in cell.source:
            continue
        solution = next((j for j in range(i + 1, len(nb.cells)) if SOLUTION_TAG in _tags(nb.cells[j])), None)
        start = solution if solution is not None else i
        checker = next((j for j in range(start + 1, len(nb.cells)) if nb.cells[j].cell_type == "code"
                        and "check(" in nb.cells[j].source and SOLUTION_TAG not in _tags(nb.cells[j])), None)
        found.append((i, solution, checker))
    return found


def _text_outputs(cell) -> str:
    return "".join(out.get("text", "") if out.get("output_type") == "stream"
                   else "".join(out.get("data", {}).get("text/plain", "")) for out in cell.get("outputs", []))


def exercise_problems(nb, name: str) -> list[str]:
    """Solutions must be hidden; every stub needs a solution and a check cell that passed."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if SOLUTION_TAG in _tags(cell) and cell.cell_type == "code" and "hide-cell" not in _tags(cell):
            problems.append(f"{name}: solution cell {i} must also be tagged 'hide-cell' (hidden in the book)")
    for stub, solution, checker in exercises(nb):
        if solution is None:
            problems.append(f"{name}: the exercise stub in cell {stub} has no following cell tagged 'solution'")
        elif checker is None:
            problems.append(f"{name}: the exercise of cell {stub} has no check cell (one calling check(...))")
        elif nb.cells[checker].get("execution_count") is not None and CHECK_PASSED not in _text_outputs(nb.cells[checker]):
            problems.append(f"{name}: the check in cell {checker} did not pass with the solution of cell {solution}")
    return problems


def student_notebook(nb):
    """The student edition of a chapter: no cell tagged ``solution``, no dropdown titled
    "Solution", no stored outputs or widget state (students run it themselves)."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if SOLUTION_TAG not in _tags(c)]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = DROPDOWN_SOLUTION.sub("", cell.source)
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    return nb


def student(paths, root: Path = REPO_ROOT, out: Path | None = None) -> list[Path]:
    """Write the student edition of each notebook to ``_build/student/<chapter>.ipynb``."""
    out = Path(out) if out is not None else Path(root) / STUDENT_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        target = out / Path(path).name
        _write(student_notebook(_read(path)), target)
        written.append(target)
    return written


def check(paths=None, root: Path = REPO_ROOT) -> list[str]:
    """Problems in the given notebooks (default: every notebook in _toc.yml)."""
    root = Path(root)
    paths = toc_notebooks(root) if paths is None else [Path(p) for p in paths]
    problems = []
    for path in paths:
        problems += check_notebook(path, root)
    return problems


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="book root (holds _config.yml, _toc.yml)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_sync = sub.add_parser("sync-colab", help="write the Colab badge and setup cells from _config.yml")
    p_exec = sub.add_parser("execute", help="execute notebooks in place at full size, storing outputs")
    p_exec.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    p_exec.add_argument("--fast", action="store_true", help="set DYREG_FAST=1 (for trying the tool, not for committing)")
    p_check = sub.add_parser("check", help="verify badge, setup cell, stored outputs, no errors, kernelspec")
    p_student = sub.add_parser("student", help="write the student edition (no solutions) to _build/student/")
    p_student.add_argument("--out", type=Path, help="default: <root>/_build/student")
    for p in (p_sync, p_exec, p_check, p_student):
        p.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in _toc.yml")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    paths = [p.resolve() for p in args.notebooks] or toc_notebooks(root)
    if not paths:
        print("no chapter notebooks in _toc.yml")
        return 0
    if args.command == "sync-colab":
        missing = [p for p in paths if not p.exists()]
        if missing:
            print("missing: " + ", ".join(map(str, missing)), file=sys.stderr)
            return 1
        changed = sync_colab(paths, root)
        print(f"sync-colab: {len(changed)} of {len(paths)} notebooks updated")
        return 0
    if args.command == "execute":
        execute(paths, timeout=args.timeout, fast=args.fast)
        return 0
    if args.command == "student":
        written = student(paths, root, args.out)
        print(f"student: {len(written)} notebooks written to {written[0].parent if written else '-'}")
        return 0
    problems = check(paths, root)
    for line in problems:
        print(line, file=sys.stderr)
    print(f"check: {len(paths)} notebooks, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
