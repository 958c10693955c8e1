"""The paper's MultiSyncMNIST ablations (Tables 5, 6, 7, 9, 11), trained and tabulated.

    python -m dyreg_edu.ablations --scale mini              # every table
    python -m dyreg_edu.ablations --scale mini --table 5    # one table
    python -m dyreg_edu.ablations --scale paper --device cuda --max-minutes 8

For each run of a table the runner trains what is missing, resumes what is unfinished
(from ``runs/<scale>/<name>/checkpoint.pt``), skips what is done, copies each finished
run's ``result.json`` to ``results/multisync[/mini]/<name>.json`` (another mini design's to
``results/research/design_<tag>/``, see :func:`results_dir`), and writes each table
as Markdown and JSON (``table<k>.md``, ``table<k>.json``) beside the paper's numbers.
A run's name is its variant (``dyreg``) or the variant and what differs
(``dyreg_nodes16``, ``pos_only_size2.67``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .mini import DEFAULT_DIGIT_STEPS, design_summary, design_tag, resnet_head_path
from .runs import REPO_ROOT, export_checkpoint, write_gzip
from .runs import read_log  # noqa: F401  (re-exported: the chapters read a run's log beside keep_log)
from .train import SCALES, TrainConfig, config, train

#: The paper's accuracies (percent) on MultiSyncMNIST.
PAPER = {
    "5": {"fixed": 78.85, "static": 81.48, "constant_time": 86.77, "pos_only": 93.41, "dyreg": 95.09,
          "oracle": 97.30},  # the oracle: Appendix E.6's upper bound, reported beside Table 5
    "6": {"resnet18": 52.29, "fixed": 78.85, "semantic": 82.41, "lite": 91.43, "dyreg": 95.09},
    "7": {"dyreg_nodes5": 89.6, "dyreg": 95.1, "dyreg_nodes16": 95.6},
    "9": {"no_gru": 91.91, "dyreg": 95.09},
    "11": {"dyreg": 95.09, "pos_only_size2.67": 93.41, "pos_only_size2.29": 94.11, "pos_only_size2": 94.04,
           "pos_only_size1.45": 94.03, "pos_only_size1": 90.99},
}
#: Table 7's three columns, by the number of digits of the data (D = 3, 5, 9): a table is set beside the
#: column of its own digits (the mini scale has three, the paper scale five).
PAPER_TABLE7 = {3: {"dyreg_nodes5": 98.2, "dyreg": 98.1, "dyreg_nodes16": 98.4}, 5: PAPER["7"],
                9: {"dyreg_nodes5": 64.4, "dyreg": 79.3, "dyreg_nodes16": 83.0}}
TITLES = {
    "5": "Table 5: dynamic nodes (each row adds one property)",
    "6": "Table 6: semantic vs spatial nodes",
    "7": "Table 7: number of nodes (the paper's column for {digits} digits)",
    "9": "Table 9: recurrence in region generation",
    "11": "Table 11: region size (fixed H / lambda, H = 16, vs learned)",
}
ROW_NAMES = {
    "resnet18": "ResNet-18 (no graph)", "fixed": "Fixed", "static": "Static", "constant_time": "Constant-Time",
    "pos_only": "Position-Only", "dyreg": "DyReg-GNN", "semantic": "Semantic", "lite": "DyReg-GNN-Lite",
    "no_gru": "DyReg-GNN without GRU", "oracle": "Oracle: the digits' ground-truth boxes as regions (App. E.6)",
    "resnet18_continued": "ResNet-18 trained on as long as the graph variants (control)",
    "resnet18_tsm": "ResNet-18 with a temporal shift, trained as long (motion-aware control)", "dyreg_nodes5": "DyReg, 5 nodes", "dyreg_nodes16": "DyReg, 16 nodes",
    "pos_only_size2.67": "fixed size, lambda = 6", "pos_only_size2.29": "fixed size, lambda = 7",
    "pos_only_size2": "fixed size, lambda = 8", "pos_only_size1.45": "fixed size, lambda = 11",
    "pos_only_size1": "fixed size, lambda = 16 (bilinear)",
}
#: Runs in the order of their value: the central contrast first.
PRIORITY = ["dyreg", "fixed", "resnet18", "pos_only", "static", "constant_time", "semantic", "lite", "no_gru",
            "dyreg_nodes5", "dyreg_nodes16", "pos_only_size1", "pos_only_size2", "pos_only_size2.67",
            "pos_only_size2.29", "pos_only_size1.45", "oracle"]
#: The checkpoints the book loads (``checkpoints/multisync[_mini]_<variant>.pt``).
BOOK_CHECKPOINTS = ("dyreg", "fixed", "pos_only", "static", "constant_time", "resnet18", "oracle")


@dataclass(frozen=True)
class Run:
    name: str
    variant: str
    overrides: dict = field(default_factory=dict)

    def config(self, scale: str, **common) -> TrainConfig:
        return config(self.variant, scale, **{**common, **self.overrides})


def run_of(name: str) -> Run:
    """The run called ``name``: a variant, ``<variant>_nodes<N>``, ``pos_only_size<s>`` or
    ``resnet18_continued`` (the plain model trained on from its checkpoint for as many videos as
    a mini graph variant gets: the control that says what the graph adds beyond more training) or
    ``resnet18_tsm`` (the same with TSM's temporal shift before ``layer3``: the control that says
    whether motion can be learned at all in those videos, without a graph)."""
    if name in ("resnet18_continued", "resnet18_tsm"):
        shift = {"temporal_shift": True} if name == "resnet18_tsm" else {}
        return Run(name, "resnet18", {"head_init": "resnet18", "epochs": SCALES["mini"]["epochs"], **shift})
    if name.startswith("dyreg_nodes"):
        return Run(name, "dyreg", {"num_nodes": int(name[len("dyreg_nodes"):])})
    if name.startswith("pos_only_size"):
        return Run(name, "pos_only", {"block": {"fixed_size": 16 / round(16 / float(name[len("pos_only_size"):]))}})
    return Run(name, name)


def table_runs(table: str, scale: str = "mini") -> list[Run]:
    if table not in PAPER:
        raise ValueError(f"table must be one of {tuple(PAPER)}, got {table!r}")
    names = list(PAPER[table])
    if table == "5":
        names = ["resnet18"] + names  # the motion-blind plain model, for reference
        if scale == "mini":  # graph variants start from it there: the plain model trained on as long,
            names[1:1] = ["resnet18_continued", "resnet18_tsm"]  # without and with a view of motion
    return [run_of(name) for name in names]


def results_dir(scale: str, **design) -> Path:
    """``results/multisync/mini`` (or the paper scale's ``results/multisync``): the paper's tables, as the
    committed design trains them. Another design (``design``: settings such as ``digit_steps=6000`` or
    ``digit_size=14, max_step=5``) is a research question of its own: its results and tables go to
    ``results/research/design_<tag>`` (:func:`~dyreg_edu.mini.design_tag`: ``design_digits6000/``,
    ``design_px14_step5/``; at the paper scale ``design_paper_<tag>``)."""
    tag = design_tag(config("resnet18", scale, **design))
    if tag:
        return REPO_ROOT / "results" / "research" / ("design" + ("" if scale == "mini" else "_paper") + tag)
    return REPO_ROOT / "results" / "multisync" / ("mini" if scale == "mini" else "")


def read_result(scale: str, name: str, **design) -> dict | None:
    path = results_dir(scale, **design) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def run_one(run: Run, scale: str, runs_root: Path, *, deadline: float, common: dict, progress: bool) -> dict | None:
    """Train (or resume) one run until it finishes or the deadline; returns its result when finished."""
    cfg = run.config(scale, **common)
    design = {k: v for k, v in common.items() if k != "device"}
    done = read_result(scale, run.name, **design)
    if done and done.get("finished"):  # settings added since the run was made take their defaults
        saved = TrainConfig.from_dict(done["config"])
        if saved.to_dict() == dataclasses.replace(cfg, device=saved.device).to_dict():
            return done
    out = runs_root / run.name
    minutes = (deadline - time.time()) / 60
    if minutes < 0.5:
        return None
    resume = (out / "checkpoint.pt").exists()
    shown = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
    flags = {"digit_size": "--digit-size", "max_step": "--max-step", "digit_steps": "--digit-steps"}
    design_flags = "".join(f" {flags[k]} {v:g}" for k, v in design.items() if k in flags)
    command = f"python -m dyreg_edu.train --variant {run.variant} --scale {scale}{design_flags} --out {shlex.quote(str(shown))}"
    result = train(cfg, out, resume=resume, max_minutes=minutes, progress=progress, command=command + " (via dyreg_edu.ablations)")
    if not result["finished"]:
        return None
    path = results_dir(scale, **design) / f"{run.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    keep_log(out / "log.jsonl", kept_log_path(scale, run.name, **design))
    if run.name in BOOK_CHECKPOINTS and not design_tag(cfg):
        prefix = "multisync_mini_" if scale == "mini" else "multisync_"
        export_checkpoint(out, REPO_ROOT / "checkpoints" / f"{prefix}{run.name}.pt")
    elif run.name == "resnet18" and scale == "mini":  # the start of this design's graph variants
        export_checkpoint(out, resnet_head_path(cfg))
    return result


def kept_log_path(scale: str, name: str, **design) -> Path:
    """Where :func:`run_one` keeps run ``name``'s thinned log: ``<results_dir>/logs/<name>.jsonl.gz``
    (``read_log`` finds it by either name)."""
    return results_dir(scale, **design) / "logs" / f"{name}.jsonl.gz"


def keep_log(source: Path, target: Path, every: int = 10) -> Path:
    """A run's log, thinned and gzipped for the repository: every ``every``-th step and every validation
    line, written to ``target`` (``.jsonl.gz``; a ``.jsonl`` name gets ``.gz`` added) with
    :func:`~dyreg_edu.runs.write_gzip`. Returns the path written."""
    lines = [line for line in Path(source).read_text().splitlines() if line.strip()]
    kept = [line for line in lines if '"val_accuracy"' in line or json.loads(line)["step"] % every == 0]
    target = Path(target)
    target = target if target.suffix == ".gz" else target.with_name(target.name + ".gz")
    return write_gzip(target, "".join(line + "\n" for line in kept))


def standard_error(videos: int) -> float:
    """The largest standard error of an accuracy measured on ``videos`` videos, in points
    (a binomial proportion at 50%: ``100 * sqrt(0.25 / videos)``)."""
    return 100.0 * math.sqrt(0.25 / videos)


def write_table(table: str, scale: str, **design) -> Path:
    """``table<k>.md`` and ``.json`` from the result files present, beside the paper's numbers
    (``design``: as for :func:`results_dir`)."""
    rows, plain = [], config("resnet18", scale, **design)
    paper = PAPER_TABLE7.get(plain.num_digits, {}) if table == "7" else PAPER[table]
    for run in table_runs(table, scale):
        result = read_result(scale, run.name, **design)
        rows.append({"name": run.name, "model": ROW_NAMES.get(run.name, run.name),
                     "paper": paper.get(run.name, PAPER["6"].get(run.name) if table != "7" else None),
                     "ours": result["val_accuracy"] if result else None,
                     "still": result.get("still_val_accuracy") if result else None,
                     "object_centric": (result.get("object_centric") or {}).get("score") if result else None,
                     "train_videos": result["train_videos"] if result else None,
                     "wall_seconds": result["wall_seconds"] if result else None})
    folder = results_dir(scale, **design)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"table{table}.json").write_text(json.dumps({"table": table, "scale": scale, "rows": rows}, indent=2) + "\n")
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    title = TITLES[table].format(digits=plain.num_digits)
    lines = [f"# {title} ({scale} scale{design_summary(plain)})", "",
             "| model | paper (%) | ours (%) | ours, still videos (%) | object-centric distance | training videos | minutes |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {fmt(r['paper'], '.2f')} | {fmt(r['ours'], '.2f')} | {fmt(r['still'], '.2f')} "
                     f"| {fmt(r['object_centric'], '.3f')} "
                     f"| {fmt(r['train_videos'], ',d')} | {fmt(r['wall_seconds'] and r['wall_seconds'] / 60, '.1f')} |")
    lines += ["", "*Still videos*: every frame replaced by the first, so nothing moves; the drop from the column "
              "before is what the model gets from motion. Validation: the first videos of the validation split "
              f"(its standard error is at most ±{standard_error(plain.val_videos):.1f} points on {plain.val_videos:,d} videos)."]
    path = folder / f"table{table}.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dyreg_edu.ablations", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="mini", help="mini or paper")
    p.add_argument("--table", action="append", help="5, 6, 7, 9 or 11 (repeatable; default all)")
    p.add_argument("--run", action="append",
                   help="only these runs of the tables (repeatable or comma-separated, e.g. dyreg,dyreg_nodes16)")
    p.add_argument("--runs", type=Path, help="where the run directories go (default runs/<scale>, and "
                   "runs/<scale>_<design> for another mini design, e.g. runs/mini_px14_step5)")
    p.add_argument("--max-minutes", type=float, default=float("inf"), help="stop (and save) after this long")
    p.add_argument("--device", default="cpu")
    p.add_argument("--digit-steps", type=int, default=DEFAULT_DIGIT_STEPS,
                   help="mini design: pretraining steps of the digit backbone (another value keeps its own "
                        "results in results/research/design_digits<steps>/)")
    p.add_argument("--digit-size", type=int, help="mini design: digit size in video pixels (default: 7 at 64; "
                   "its own results in results/research/design_px<size>.../)")
    p.add_argument("--max-step", type=float, help="mini design: the largest step a frame in video pixels (default 2.5 at 64)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        tables = args.table or list(PAPER)
        names = {run.name: run for table in tables for run in table_runs(table, args.scale)}
        if args.run:
            wanted = [name for arg in args.run for name in arg.split(",") if name]
            unknown = set(wanted) - set(names)
            if unknown:
                raise ValueError(f"--run must name runs of tables {tables}: {sorted(names)}; got {sorted(unknown)}")
            names = {name: names[name] for name in wanted}
        order = sorted(names, key=lambda n: PRIORITY.index(n) if n in PRIORITY else len(PRIORITY))
        if args.scale == "mini" and "resnet18" in order:  # the graph variants start from it (head_init)
            order.remove("resnet18")
            order.insert(0, "resnet18")
        deadline = time.time() + 60 * args.max_minutes
        design = {"digit_size": args.digit_size, "max_step": args.max_step}  # the mini design, when not the committed one
        design = {k: v for k, v in design.items() if v is not None}
        if args.digit_steps != DEFAULT_DIGIT_STEPS:
            design["digit_steps"] = args.digit_steps
        # another design's runs go apart too (runs/mini_px14_step5/), so that their names do not collide
        runs_root = args.runs or REPO_ROOT / "runs" / (args.scale + design_tag(config("resnet18", args.scale, **design)))
        for name in order:
            common = {"device": args.device, **design}
            result = run_one(names[name], args.scale, runs_root, deadline=deadline, common=common,
                             progress=not args.no_progress)
            print(f"{name}: " + (f"{result['val_accuracy']:.2f}%" if result else "unfinished"), flush=True)
        for table in tables:
            print(write_table(table, args.scale, **design).read_text())
    except (ValueError, FileNotFoundError) as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
