"""What this book reproduces: the status table at the top of ``README.md`` and ``book/intro.md``,
generated from the committed result files and the chapters' stored outputs.

    python tools/status_table.py           # rewrite the table in README.md and book/intro.md
    python tools/status_table.py --check   # exit 1 if either file's table is not what this writes

Each row says what is compared with the paper, the value measured, its status and where it is shown.
Every value is read from a file that code of this repository wrote (``results/``, a chapter's stored
outputs) or counted from the library's models; a claim that only a test checks names that test. The
table sits between :data:`START` and :data:`END`; the text around it is left alone. Run this after
adding or changing a result: ``tests/test_status_table.py`` fails while a table is stale.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START = "<!-- status-table:start -->"
END = "<!-- status-table:end -->"
#: The files that carry the table, and where each one's relative links start from.
TARGETS = ("README.md", "book/intro.md")
#: Paper Table 6, "Params (M)" (the accuracies are in results/multisync/table6.json).
TABLE_6_PARAMS = {"resnet18": 2.79, "fixed": 2.82, "semantic": 2.85, "lite": 2.83, "dyreg": 3.08}
STATUSES = {
    "reproduced": "agrees with the paper",
    "partly": "part of it agrees",
    "not shown": "the run finished without the paper's effect",
    "not yet": "no finished run or measurement",
    "pipeline only": "runs end to end, on no real data",
    "outside the paper": "settings the paper does not use",
}


@dataclass
class Row:
    what: str
    measured: str
    status: str
    where: list[tuple[str, str]]  # (label, path from the repository root)


# --------------------------------------------------------------------------- reading


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def stored_outputs(notebook: Path) -> list[str]:
    """The text of every stored output of a chapter, one string per code cell."""
    cells = load(notebook)["cells"]
    texts = []
    for cell in cells:
        parts = []
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            parts.append("".join(text))
        texts.append("".join(parts))
    return texts


def golden_differences(notebook: Path) -> dict[str, float]:
    """Chapter 4's table of largest differences to the authors' module: ``{golden file: largest}``."""
    for text in stored_outputs(notebook):
        lines = text.strip().splitlines()
        if lines and lines[0].split()[:2] == ["fixture", "regions"]:
            return {line.split()[0]: max(float(v) for v in line.split()[1:]) for line in lines[1:]}
    return {}


def full_res_difference(notebook: Path) -> float | None:
    """Chapter 8's largest output difference to the authors' full-resolution golden file."""
    for text in stored_outputs(notebook):
        match = re.search(r"max \|ours - authors'\| output ([0-9.eE+-]+)", text)
        if match:
            return float(match.group(1))
    return None


def runs(folder: Path) -> dict[str, dict]:
    """The finished runs of a folder: ``{file stem: result}``."""
    found = {}
    for path in sorted(folder.glob("*.json")):
        result = load(path)
        if result.get("finished", "val_accuracy" in result):
            found[path.stem] = result
    return found


def margin(val_videos: int) -> float:
    """Two standard errors of an accuracy near 50% on ``val_videos`` videos, in points."""
    return 2 * 100 * math.sqrt(0.25 / val_videos)


def pct(value: float) -> str:
    return f"{value:.2f}%"


# --------------------------------------------------------------------------- rows


def block_rows(repo: Path) -> list[Row]:
    diffs = golden_differences(repo / "book/04_dyreg_block.ipynb")
    forward = (f"largest difference {max(diffs.values()):.1e} on {len(diffs)} golden files" if diffs
               else "not in chapter 4's stored outputs")
    return [
        Row("DyReg block = the authors' module, forward", forward,
            "reproduced" if diffs and max(diffs.values()) < 1e-4 else "not yet",
            [("chapter 4", "book/04_dyreg_block.ipynb"), ("test", "tests/test_fixtures_official.py")]),
        gradient_row(repo),
    ]


def gradient_row(repo: Path) -> Row:
    """Our block's backward against the authors' module's (``tools/gradient_parity.py``)."""
    path = repo / "results/fidelity/gradients.json"
    what = "DyReg block = the authors' module, gradients"
    if not path.exists():
        return Row(what, "not compared (run tools/gradient_parity.py with the authors' code)", "not yet",
                   [("test", "tests/test_kernels.py")])
    result = load(path)
    fixtures = result["fixtures"]
    largest = result["max_rel_difference"]
    measured = (f"largest gradient difference {result['max_abs_difference']:.1e} ({largest:.1e} relative), "
                f"{result['dtype']}, over every parameter and the input, {len(fixtures)} golden files")
    return Row(what, measured, "reproduced" if largest < 1e-10 else "not yet",
               [("test", "tests/test_gradients_official.py"), ("results", "results/fidelity/gradients.json")])


@functools.lru_cache(maxsize=1)
def parameter_counts() -> tuple[dict[str, int], dict[str, int]]:
    """Our models' parameters: ``({Table 6 variant: count}, {Table 12 row: count})``, built on the meta device."""
    import torch

    from dyreg_edu.layers import count_parameters
    from dyreg_edu.models import TABLE_12, syncmnist_model, tsm_resnet

    with torch.device("meta"):  # shapes only: nothing is allocated or computed
        six = {v: count_parameters(syncmnist_model(v)) for v in TABLE_6_PARAMS}
        twelve = {name: count_parameters(tsm_resnet(graph_stages=stages, regions=regions))
                  for name, (stages, regions, _, _) in TABLE_12.items()}
    return six, twelve


def parameter_rows() -> list[Row]:
    from dyreg_edu.models import TABLE_12

    six, twelve = parameter_counts()
    off6 = [v for v, n in six.items() if round(n / 1e6, 2) != TABLE_6_PARAMS[v]]
    off12 = [name for name, n in twelve.items() if round(n / 1e6, 1) != TABLE_12[name][3]]
    names6 = {"resnet18": "ResNet-18", "fixed": "Fixed", "semantic": "Semantic", "lite": "Lite", "dyreg": "DyReg"}
    measured6 = ", ".join(f"{names6[v]} {n:,}" for v, n in six.items())
    measured12 = ", ".join(f"{name} {n / 1e6:.2f}M" for name, n in twelve.items())
    if off12:
        measured12 += "; " + ", ".join(f"paper {TABLE_12[name][3]}M for {name}" for name in off12)
    return [
        Row("Parameters, Table 6", measured6, "reproduced" if not off6 else "partly",
            [("chapter 4", "book/04_dyreg_block.ipynb"), ("test", "tests/test_models.py")]),
        Row("Parameters, Table 12", measured12,
            "reproduced" if not off12 else "partly",
            [("chapter 8", "book/08_tsm_dyreg.ipynb"), ("test", "tests/test_models.py")]),
    ]


def checkpoint_rows(repo: Path) -> list[Row]:
    full = full_res_difference(repo / "book/08_tsm_dyreg.ipynb")
    return [
        Row("The authors' checkpoint layouts", "both layouts load with equal logits (checkpoints written in "
            "their layout; their released file was not run here)", "reproduced",
            [("chapter 8", "book/08_tsm_dyreg.ipynb"), ("test", "tests/test_tsm_official.py")]),
        Row("Full-resolution evaluation", f"largest difference {full:.1e} on the authors' golden file"
            if full is not None
            else "not in chapter 8's stored outputs", "reproduced" if full is not None and full < 1e-4 else "not yet",
            [("chapter 8", "book/08_tsm_dyreg.ipynb"), ("test", "tests/test_fixtures_official.py")]),
    ]


def paper_scale_row(repo: Path) -> Row:
    multisync = repo / "results/multisync"
    tables = sorted(multisync.glob("table*.json"), key=lambda p: int(p.stem[5:]))
    rows = [r for path in tables for r in load(path)["rows"]]
    done = [r for r in rows if r["ours"] is not None]
    attempts = [load(path) for path in sorted((multisync / "attempts").glob("*.json"))]
    measured = f"{len(done)} of the {len(rows)} rows of Tables {', '.join(p.stem[5:] for p in tables)} run"
    if attempts:
        accuracies = " and ".join(pct(a["bn_statistics_recomputed"]["val_accuracy"]) for a in attempts)
        scored_on = " and ".join(sorted({str(a["measured_on_videos"]) for a in attempts}))
        videos = " and ".join(f"{a['train_videos'] / 1e6:.2f}M" for a in attempts)
        measured += (f"; {len(attempts)} DyReg attempts stopped at {accuracies} ({scored_on} videos) after {videos} "
                     f"training videos "
                     f"(motion-blind: {_blind_ceiling(repo, 'paper')})")
    return Row("MultiSyncMNIST, the paper's scale", measured, "not yet" if not done else "partly",
               [("chapter 6", "book/06_training.ipynb"), ("attempts", "results/multisync/attempts/")])


def mini_row(repo: Path) -> Row:
    rows = load(repo / "results/multisync/mini/table5.json")["rows"]
    ours = [r["ours"] for r in rows if r["ours"] is not None]
    paper = [r["paper"] for r in rows if r["paper"] is not None]
    level = max(ours) - min(ours) < 1.5 * margin(2000)
    measured = (f"Table 5: every row {min(ours):.1f} to {max(ours):.1f}%, the oracle's boxes too "
                f"(paper {min(paper):.1f} to {max(paper):.1f}%)")
    return Row("MultiSyncMNIST, mini scale", measured, "not shown" if level else "partly",
               [("chapter 7", "book/07_ablations.ipynb"), ("results", "results/multisync/mini/")])


def _blind_ceiling(repo: Path, rung: str) -> str | None:
    """The motion-blind accuracy of a rung as ``ladder.json`` describes it (e.g. ``"37.8%"``)."""
    for entry in load(repo / "results/multisync/ladder/ladder.json")["rungs"]:
        match = re.search(r"([0-9.]+%) without motion", entry["description"])
        if entry["name"] == rung and match:
            return match.group(1)
    return None


def ladder_rows(repo: Path) -> list[Row]:
    folder = repo / "results/multisync/ladder"
    rungs = [r for r in load(folder / "ladder.json")["rungs"] if r["settings"]["scale"] != "paper"]
    rows = [_regions_row(folder, r["name"]) for r in rungs if not r["needs_relation"]]
    relation = [r["name"] for r in rungs if r["needs_relation"]]
    parts, status = [], "not yet"
    for rung in relation:
        found = runs(folder / rung)
        missing = [v for v in ("dyreg", "fixed") if v not in found]
        done = ", ".join(f"{_variant(name)} {pct(r['val_accuracy'])}" for name, r in found.items())
        if not found:
            parts.append(f"`{rung}`: no finished run")
            continue
        seeds = [n[len("dyreg"):] for n in found if n.startswith("dyreg") and "fixed" + n[len("dyreg"):] in found]
        ahead = [s for s in seeds if found["dyreg" + s]["val_accuracy"] - found["fixed" + s]["val_accuracy"]
                 > margin(found["dyreg" + s]["val_videos"])]
        tally = f" (DyReg ahead of Fixed in {len(ahead)} of {len(seeds)} seeds)" if len(seeds) > 1 else ""
        parts.append(f"`{rung}`: {done}{tally}"
                     + (f"; {' and '.join(map(_variant, missing))} not finished" if missing else ""))
        if not missing and status == "not yet":
            status = "partly" if ahead else "not shown"
    rows.append(Row("Ladder, the rungs that need the relation", "; ".join(parts), status,
                    [("chapter 6", "book/06_training.ipynb"), ("results", "results/multisync/ladder/")]))
    return rows


def _variant(name: str) -> str:
    base, _, seed = name.partition("_seed")
    label = {"resnet18": "plain model", "dyreg": "DyReg", "fixed": "Fixed"}.get(base, f"`{base}`")
    return label + (f" (seed {seed})" if seed else "")


def _regions_row(folder: Path, rung: str) -> Row:
    """A rung without the relation: accuracies, and whether DyReg's regions moved onto the digits."""
    found = runs(folder / rung)
    dyreg = [r for n, r in found.items() if n.startswith("dyreg")]
    others = ", ".join(f"{_variant(n)} {pct(r['val_accuracy'])}" for n, r in found.items() if not n.startswith("dyreg"))
    starts = sorted({f"{r['object_centric_distance_at_start']:.2f}" for r in dyreg})
    ends = " and ".join(f"{r['object_centric']['score']:.2f}" for r in dyreg)
    fixed = found.get("fixed", {}).get("object_centric", {}).get("score")
    measured = (f"DyReg {' and '.join(pct(r['val_accuracy']) for r in dyreg)} ({len(dyreg)} seeds), {others}; "
                f"DyReg's object-centric distance from {' and '.join(starts)} to {ends}"
                + (f" (Fixed {fixed:.2f})" if fixed is not None else ""))
    moved = bool(dyreg) and all(r["object_centric"]["score"] < r["object_centric_distance_at_start"] for r in dyreg)
    return Row(f"Ladder, `{rung}` rung (no relation): regions onto the digits", measured,
               "partly" if moved else "not shown",
               [("chapter 6", "book/06_training.ipynb"), ("results", f"results/multisync/ladder/{rung}/")])


def research_row(repo: Path) -> Row:
    folder = repo / "results/research/oracle_head"
    dyreg, fixed = load(folder / "taught_regions_released.json"), load(folder / "fixed.json")
    switches = ", ".join(f"`{k}`" for k in {**(fixed["config"].get("block") or {}),
                                             **(fixed["config"].get("experiments") or {})})
    measured = (f"DyReg {pct(dyreg['val_accuracy'])} ({dyreg['config']['num_nodes']} nodes, regions taught by box "
                f"supervision), Fixed {pct(fixed['val_accuracy'])}; both from the oracle's trained head, with "
                f"{switches}: none in the paper")
    return Row("Mini scale, research settings", measured, "outside the paper",
               [("chapter 11", "book/11_mini_scale_investigation.ipynb"), ("results", "results/research/oracle_head/")])


def ssv2_row(repo: Path) -> Row:
    real = sorted((repo / "results/ssv2").glob("*.json")) if (repo / "results/ssv2").is_dir() else []
    measured = (f"{len(real)} result files in results/ssv2/" if real else
                "loader, recipe and both evaluations run on a small generated set; no run on the real data")
    return Row("Something-Something V2", measured, "pipeline only" if not real else "partly",
               [("chapter 9", "book/09_something_something.ipynb"), ("test", "tests/test_train_ssv2.py")])


def rows(repo: Path = REPO) -> list[Row]:
    return [*block_rows(repo), *parameter_rows(), *checkpoint_rows(repo), mini_row(repo), *ladder_rows(repo),
            paper_scale_row(repo), research_row(repo), ssv2_row(repo)]


# --------------------------------------------------------------------------- writing


def link(label: str, path: str, target: str, repo: Path = REPO) -> str:
    """A link to ``path`` (from the repository root) written in ``target``: relative in the README; in the
    book, a chapter by its file name and anything else on the repository's web page."""
    if target == "README.md":
        return f"[{label}]({path})"
    if path.startswith("book/") and path.endswith((".ipynb", ".md")):
        return f"[{label}]({path[len('book/'):]})"
    from tools.notebooks import repository

    url, branch = repository(repo)
    kind = "tree" if path.endswith("/") else "blob"
    return f"[{label}]({url}/{kind}/{branch}/{path.rstrip('/')})"


def render(target: str, table: list[Row], repo: Path = REPO) -> str:
    """The block written between the markers in ``target``."""
    lines = [START, "<!-- Generated by tools/status_table.py from the result files; do not edit. -->", "",
             "| what | measured | status | where |", "|---|---|---|---|"]
    for row in table:
        where = ", ".join(link(label, path, target, repo) for label, path in row.where)
        lines.append(f"| {row.what} | {row.measured} | **{row.status}** | {where} |")
    used = [s for s in STATUSES if any(r.status == s for r in table)]
    lines += ["", "*Status*: " + "; ".join(f"**{s}**, {STATUSES[s]}" for s in used) + ".", END]
    return "\n".join(lines)


def replace_block(text: str, block: str, name: str) -> str:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{name} must hold one {START} ... {END} block")
    return text[:text.index(START)] + block + text[text.index(END) + len(END):]


def stale(repo: Path = REPO, files: Path | None = None) -> list[str]:
    """The targets whose table differs from what the result files in ``repo`` give (``files``: where the
    targets are read, default ``repo``)."""
    table, files = rows(repo), files or repo
    out = []
    for target in TARGETS:
        text = (files / target).read_text()
        if replace_block(text, render(target, table, repo), target) != text:
            out.append(target)
    return out


def write(repo: Path = REPO) -> list[str]:
    """Rewrite every target's table; the targets that changed. Nothing is written unless all are well formed."""
    table = rows(repo)
    texts = {target: (repo / target).read_text() for target in TARGETS}
    new = {target: replace_block(text, render(target, table, repo), target) for target, text in texts.items()}
    for target in TARGETS:
        if new[target] != texts[target]:
            (repo / target).write_text(new[target])
    return [target for target in TARGETS if new[target] != texts[target]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a table is not what the results give")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"{name}: the status table is stale; run python tools/status_table.py", file=sys.stderr)
        return 1 if bad else 0
    for name in write():
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
