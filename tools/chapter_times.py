"""How long each chapter takes: measured full-size execution times, for the syllabus.

    python tools/chapter_times.py measure [NOTEBOOK ...]   # run each chapter at full size, record its times
    python tools/chapter_times.py table                    # print the syllabus's time table
    python tools/chapter_times.py sync                     # write that table into book/syllabus.md

``measure`` executes a chapter top to bottom in a fresh python3 kernel (cwd ``book/``, as
``tools/notebooks.py execute`` does), in memory: the notebook file is never rewritten. nbclient
records, for every code cell, when the kernel started and finished it (``metadata.execution``:
``iopub.execute_input`` and ``shell.execute_reply``); ``cell_seconds`` reads those timestamps.
The kernel's CPU time (its process and its children, from ``psutil``) is read after every cell, so
that a chapter measured while other work shares the machine is still comparable: with one thread
its CPU time is close to the wall time it takes on an idle core. The results, with provenance
(command, commit, CPU, date, threads, the machine's load), are merged into
``results/book/chapter_times.json``, one entry per chapter, so chapters can be measured one at a time.

The reading time is an estimate, not a measurement: the words of the chapter's markdown cells (or
its ``.md`` file, which ``measure`` only counts) at ``WORDS_PER_MINUTE``, and is labelled so wherever it
is shown. The table is a function of the result file alone, so editing a chapter does not change it
until the chapter is measured again.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools import notebooks  # noqa: E402

RESULT = Path("results") / "book" / "chapter_times.json"
SYLLABUS = Path("book") / "syllabus.md"
WORDS_PER_MINUTE = 150          # technical reading, with the maths; an estimate, labelled as one
TABLE_BEGIN = "<!-- chapter-times: begin (written by tools/chapter_times.py sync; do not edit by hand) -->"
TABLE_END = "<!-- chapter-times: end -->"
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")


# ---------------------------------------------------------------------------
# Reading what nbclient recorded
# ---------------------------------------------------------------------------

def _timestamp(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def cell_seconds(nb) -> list[tuple[int, float]]:
    """``(cell index, seconds)`` for every code cell that carries nbclient's timing metadata
    (``metadata.execution``: ``iopub.execute_input`` to ``shell.execute_reply``)."""
    out = []
    for index, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.get("cell_type") == "code" and "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = _timestamp(timing["iopub.execute_input"]), _timestamp(timing["shell.execute_reply"])
            out.append((index, (end - start).total_seconds()))
    return out


def words(source: str) -> int:
    """Words of markdown prose: code blocks, display maths and HTML comments left out (inline maths is one word)."""
    source = re.sub(r"<!--.*?-->", " ", source, flags=re.DOTALL)
    source = re.sub(r"^```(?!\{).*?^```[ \t]*$", " ", source, flags=re.DOTALL | re.MULTILINE)   # code blocks
    source = re.sub(r"\$\$.*?\$\$", " ", source, flags=re.DOTALL)
    source = re.sub(r"\$[^$\n]+\$", " math ", source)
    return len(WORD.findall(source))


def document_words(path: Path) -> int:
    """Words of a chapter's prose: its markdown cells, or the whole ``.md`` page."""
    path = Path(path)
    if path.suffix == ".md":
        return words(path.read_text(encoding="utf-8"))
    nb = notebooks._read(path)
    return sum(words(c.source) for c in nb.cells if c.cell_type == "markdown")


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process, its live descendants and its reaped children."""
    import psutil

    proc = psutil.Process(pid)
    times = proc.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in proc.children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _first_line(source: str) -> str:
    lines = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return (lines[0] if lines else "").strip()[:80]


def measure(path: Path, timeout: int = 3600, command: str | None = None) -> dict:
    """Execute one chapter at full size, in memory, and return its times with provenance
    (``command``: the command line that asked for it; default one that measures this chapter alone)."""
    from nbclient import NotebookClient
    from dyreg_edu.runs import cpu_name, git_commit

    path = Path(path)
    nb = notebooks.normalize_metadata(notebooks._read(path))
    cpu_after_cell: dict[int, float] = {}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent.resolve())}},
                            store_widget_state=False, record_timing=True)

    def after_cell(cell, cell_index, **_):
        cpu_after_cell[cell_index] = _cpu_seconds(client.km.provisioner.pid)

    client.on_cell_executed = after_cell
    load_before = os.getloadavg()
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
    load_after = os.getloadavg()

    cells = cell_seconds(nb)
    cpu = max(cpu_after_cell.values()) if cpu_after_cell else None
    slowest = sorted(cells, key=lambda c: -c[1])[:3]
    return {
        "wall_seconds": round(wall, 1),
        "cells_seconds": round(sum(s for _, s in cells), 1),
        "kernel_cpu_seconds": None if cpu is None else round(cpu, 1),
        "code_cells": len(cells),
        "slowest_cells": [{"cell": i, "seconds": round(s, 1), "starts": _first_line(nb.cells[i].source)}
                          for i, s in slowest],
        "words": document_words(path),
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "niceness": os.nice(0),                 # the process's scheduling priority (10: yields to other work)
        "fast": os.environ.get("DYREG_FAST", "") not in ("", "0"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "command": command or "python tools/chapter_times.py measure " + shlex.quote(_relative(path)),
        "commit": git_commit(),
        "device": cpu_name(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def page_entry(path: Path, command: str) -> dict:
    """A markdown chapter: nothing to run, only its words (for the reading estimate), with provenance."""
    from dyreg_edu.runs import git_commit

    return {"words": document_words(path), "command": command, "commit": git_commit(),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.as_posix()


def _invocation(argv) -> str:
    """The command line as run, with the environment variables that change a measurement."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    return " ".join(filter(None, [env, "python tools/chapter_times.py", " ".join(map(shlex.quote, argv))]))


def load(root: Path = REPO_ROOT) -> dict:
    path = Path(root) / RESULT
    if not path.exists():
        return {"chapters": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def save(record: dict, root: Path = REPO_ROOT) -> Path:
    path = Path(root) / RESULT
    path.parent.mkdir(parents=True, exist_ok=True)
    record["about"] = ("Full-size execution time of each chapter (DYREG_FAST unset), measured by "
                       "tools/chapter_times.py measure: wall_seconds from kernel start to the last cell, "
                       "cells_seconds the sum of nbclient's per-cell timings, kernel_cpu_seconds the kernel's "
                       "CPU time (with its children). The load averages show what else the machine ran.")
    record["chapters"] = dict(sorted(record["chapters"].items()))
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# The syllabus's table
# ---------------------------------------------------------------------------

def _duration(seconds) -> str:
    if seconds is None:
        return "not measured"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _title(path: Path) -> str:
    path = Path(path)
    if path.suffix == ".md":
        text = path.read_text(encoding="utf-8")
    else:
        cells = notebooks._read(path).cells
        text = cells[0].source if cells else ""
    match = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return match.group(1).split(":")[0].strip() if match else path.stem   # "6. Training ...", no subtitle


def chapter_paths(root: Path = REPO_ROOT) -> list[Path]:
    """The book's chapters in reading order: the TOC's numbered documents (``book/NN_*``)."""
    out = []
    for doc in notebooks.toc_documents(root):
        if re.match(r"book/\d\d_", doc):
            nb, md = Path(root) / f"{doc}.ipynb", Path(root) / f"{doc}.md"
            out.append(nb if nb.exists() else md)
    return out


def table(root: Path = REPO_ROOT) -> str:
    """The markdown table of measured execution times and estimated reading times."""
    chapters = load(root)["chapters"]
    rows = ["| chapter | full-size run, wall (measured) | kernel CPU time (measured) | reading (estimate) |",
            "|---|---:|---:|---:|"]
    totals = {"wall_seconds": 0.0, "kernel_cpu_seconds": 0.0, "reading": 0.0}
    complete = True
    for path in chapter_paths(root):
        entry = chapters.get(Path(path).relative_to(root).as_posix())
        reading = (entry["words"] if entry else document_words(path)) / WORDS_PER_MINUTE * 60
        totals["reading"] += reading
        if path.suffix == ".md":
            run = cpu = "nothing to run"
        elif entry is None:
            run = cpu = "not measured"
            complete = False
        else:
            run, cpu = _duration(entry["wall_seconds"]), _duration(entry["kernel_cpu_seconds"])
            totals["wall_seconds"] += entry["wall_seconds"]
            totals["kernel_cpu_seconds"] += entry["kernel_cpu_seconds"]
        rows.append(f"| {_title(path)} | {run} | {cpu} | {_duration(reading)} |")
    if complete:
        rows.append(f"| **all chapters** | {_duration(totals['wall_seconds'])} | "
                    f"{_duration(totals['kernel_cpu_seconds'])} | {_duration(totals['reading'])} |")
    return "\n".join(rows)


def synced(text: str, root: Path = REPO_ROOT) -> str:
    """``text`` with the block between the table markers replaced by ``table(root)``."""
    begin, end = text.index(TABLE_BEGIN) + len(TABLE_BEGIN), text.index(TABLE_END)
    return text[:begin] + "\n" + table(root) + "\n" + text[end:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["measure", "table", "sync"])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command == "measure":
        if os.environ.pop("DYREG_FAST", None) not in (None, "", "0"):
            print("note: DYREG_FAST was set; measuring at full size anyway")
        paths = args.notebooks or chapter_paths()
        failed = 0
        for path in paths:
            path = Path(path).resolve()
            print(f"measuring {_relative(path)} ...", flush=True)
            try:
                entry = (page_entry(path, _invocation(argv)) if path.suffix == ".md" else
                         measure(path, timeout=args.timeout, command=_invocation(argv)))
            except Exception as error:  # a chapter that fails is reported and not recorded
                print(f"  failed, not recorded: {type(error).__name__}: {str(error)[-500:]}", flush=True)
                failed += 1
                continue
            record = load()
            record["chapters"][_relative(path)] = entry
            print(f"  {entry['wall_seconds']:.0f} s wall, {entry['kernel_cpu_seconds']} s CPU" if "wall_seconds" in entry
                  else f"  {entry['words']} words (a page: nothing to run)", flush=True)
            save(record)
        return 1 if failed else 0
    elif args.command == "table":
        print(table())
    else:
        path = REPO_ROOT / SYLLABUS
        path.write_text(synced(path.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote the time table into {SYLLABUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
