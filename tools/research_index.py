"""The index of the research runs: ``results/research/README.md``, generated from their result files.

    python tools/research_index.py           # write results/research/README.md
    python tools/research_index.py --check   # exit 1 if the committed README is not what this writes

``results/research/`` holds the runs that are not the paper's tables (those stay in
``results/multisync/``): one folder per question, named in words. :data:`QUESTIONS` says, for each
folder, the question in one sentence and where the book answers it; the index then lists every run
of the folder (every result file with an accuracy): its name, its result, date and commit, and the
command that made it, as recorded. A folder without a question, or a question without a folder, is
an error: add the question here when you add a folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESEARCH = REPO / "results" / "research"
INDEX = RESEARCH / "README.md"

#: The commit that moved the research switches out of the method (dyreg_edu.experiments) and changed
#: the command line; a command recorded before it is written in its own commit's command line.
CLI_COMMIT, CLI_DATE = "e99f4d7", "2026-12-07 03:03 UTC"

#: folder -> (the question its runs answer, in one sentence; where the book answers it)
QUESTIONS = {
    "where_the_nodes_go": (
        "Where do DyReg's nodes go at the mini scale, and does the optimiser (AdamW or SGD) or the anchors "
        "(centre or grid) decide it?",
        "Chapter 11, *1. More of the same: still level*"),
    "second_seed": (
        "How much of a difference between Table 5's rows is the seed's: the control, Fixed and DyReg trained "
        "again with seed 1?",
        "Chapter 11, *1. More of the same: still level*"),
    "linear_scaling": (
        "With the paper's SGD, do the graph's zero-initialised scales open by the same amount per video "
        "whatever the batch when the learning rate per video is kept (the linear scaling rule)?",
        "Chapter 6, *The paper's recipe at 64 videos a step*"),
    "branch_open_from_the_start": (
        "Does opening the graph's residual branch from the first step (the `init` experiment's residual scale "
        "1.0, not in the paper) let DyReg or the oracle use motion at the mini scale?",
        "Chapter 7, *What the mini-scale Table 5 shows*; Chapter 11, *2. Ideal regions: still level*"),
    "design_digits6000": (
        "With a digit backbone pretrained four times longer (6,000 steps), does the graph add anything to the "
        "plain model at the mini scale?",
        "Chapter 11, *1. More of the same: still level*"),
    "design_px14_step5": (
        "With paper-sized digits on the small canvas (14 pixels, steps of up to 5 pixels a frame), do the graph "
        "variants or the oracle use motion?",
        "Chapter 11, *1. More of the same: still level* and *2. Ideal regions: still level*"),
    "four_times_longer": (
        "With 14-pixel digits, do Fixed, DyReg and the oracle use motion when trained four times as long "
        "(288,000 videos)?",
        "Chapter 11, *1. More of the same: still level*"),
    "nodes_that_carry_motion": (
        "Does the oracle learn the relation when its nodes also carry their kernel's change (`node_motion`) "
        "or read their kernels scaled up (`position_scale`), switches not in the paper?",
        "Chapter 11, *4. The motion as a scaled step: the oracle learns*"),
    "graph_alone": (
        "Can the graph alone, one node per digit given its class and its box centre or its step, learn which "
        "digits move in sync?",
        "Chapter 11, *3. The graph alone: the relation is learnable, late*"),
    "graph_alone_label": (
        "Asked for the video's label, as the models are, how many videos does the graph alone need to learn "
        "the relation, and how does the scale of its motion input change that?",
        "Chapter 11, *3. The graph alone: the relation is learnable, late*"),
    "oracle_nodes_probe": (
        "Can the graph alone learn the label on the oracle's own nodes (the trained backbone's pooled digits), "
        "and in which form must their motion come?",
        "Chapter 11, *4. The motion as a scaled step: the oracle learns*"),
    "centre_step": (
        "Given each node the step of its kernel's centre of mass, scaled (the `motion` experiment with "
        "`motion_from=\"centre\"`, not in the paper), does the oracle learn the relation, and do Fixed and DyReg?",
        "Chapter 11, *4. The motion as a scaled step: the oracle learns*"),
    "regions_learn_to_track": (
        "Can DyReg's regions learn from the label alone to track the digits, under the trained oracle's head "
        "or the plain model's, from the centre or a grid?",
        "Chapter 11, *5. DyReg's regions do not learn to track*"),
    "boxes_teach_the_regions": (
        "Taught by the digits' ground-truth boxes (`box_loss`, not in the paper), do DyReg's regions track the "
        "digits, and does a graph on them then learn the relation?",
        "Chapter 11, *6. Regions taught by the boxes: tracking is not enough*"),
    "oracle_on_shifted_boxes": (
        "How precisely must regions track: does the oracle learn the relation on boxes shifted at random "
        "(`oracle_jitter`, not in the paper)?",
        "Chapter 11, *6. Regions taught by the boxes: tracking is not enough*"),
    "oracle_head": (
        "Given a graph that already knows the relation (the trained oracle's head), do DyReg's regions make the "
        "difference over Fixed that the paper shows, and for how few videos must the boxes teach them?",
        "Chapter 11, *7. A graph that knows the relation, on taught regions*"),
    "symmetry": (
        "How much of the regions' first gradient do the nine nodes share when they start on one anchor (the "
        "paper's centre) or on the authors' grid, how far is it above noise, and does it point at a digit?",
        "Chapter 6, *First, what learns: regions that find a digit*, and `dyreg_edu.experiments.symmetry`"),
    "oracle_kickstart": (
        "How few videos of the boxes does the oracle's graph need: does DyReg still get there from the oracle "
        "stopped after 32,000, 40,000 or 64,000 videos?",
        "Chapter 11, *7. A graph that knows the relation, on taught regions*"),
}


#: What each research switch (``dyreg_edu.experiments``) does, in a few words, for the index's "what it is".
SWITCHES = {
    "init": "another initialisation",
    "motion": "motion in the nodes",
    "warm_start": "started from another run",
    "oracle_jitter": "boxes shifted at random",
    "box_loss": "box supervision",
}
#: Programs whose result files are not a model's run: the ``config`` key that tells them apart -> what they are.
PROGRAMS = {
    "inputs": "the graph alone on hand-made nodes (`dyreg_edu.experiments.relation`): a research program, no model",
    "position_scale": "a probe of the oracle's nodes (`dyreg_edu.experiments.oracle_nodes_probe`): a research "
                      "program, no model",
}
MODELS = {"dyreg": "DyReg", "fixed": "Fixed", "resnet18": "ResNet-18", "oracle": "the oracle (App. E.6)",
          "no_gru": "DyReg without the region GRU (Table 9)"}


def what_it_is(result: dict) -> str:
    """What a run is, in words: the paper's model, or which switches outside the paper it uses (box
    supervision named as such), or the program or measurement that made it."""
    if "bn_statistics_as_saved" in result:
        return "a measurement of a trained run (`tools/diagnose_state.py`)"
    if "reports" in result and "rung" in result:
        return "a measurement of the paper's model at its start (`dyreg_edu.experiments.symmetry`)"
    config = result.get("config") or {}
    if "variant" not in config:
        return next((said for key, said in PROGRAMS.items() if key in config), "a research program, no model")
    from dyreg_edu.experiments import migrate_config

    config = migrate_config(config)
    model = MODELS.get(config["variant"], config["variant"])
    outside = []
    for name, settings in (config.get("experiments") or {}).items():
        said = SWITCHES.get(name, name)
        if name == "warm_start" and "oracle" in str(settings.get("head", "")):
            said += ", a head trained on the ground-truth boxes"
        if name == "warm_start" and "taught" in str(settings.get("head", "")):  # a box_loss run's head
            said += ", the head of a run taught by the boxes: box supervision"
        if name == "warm_start" and "taught" in str(settings.get("regions", "")):  # a box_loss run's regions
            said += ", regions taught by the boxes: box supervision"
        outside.append(f"`{name}` ({said})")
    block = config.get("block") or {}
    if block.get("anchors") == "grid":
        outside.append("grid anchors (the authors' code; the paper starts at the centre)")
    if block.get("learn_size") is False:
        outside.append("region sizes fixed")
    if outside:
        return f"{model}; **not in the paper**: " + ", ".join(outside)
    if config["variant"] == "oracle":
        return f"{model}: the ground-truth boxes as regions, no switch outside the paper"
    return f"{model}: the paper's model, no switch outside the paper"


def percent(value) -> str:
    return f"{value:.2f}%"


def outcome(result: dict) -> str | None:
    """A result file's outcome in words, or ``None`` for a file that is not a run (a table)."""
    if "val_accuracy" in result:
        config = result.get("config") or {}
        what = {"sync": "sync flags right", "label": "labels right"}.get(config.get("target", "sync"), "")
        if "curve" not in result or "variant" in config:  # a model (dyreg_edu.train): the video's label
            what = ""
        elif "inputs" not in config:  # the probe of the oracle's nodes learns the label
            what = "labels right"
        text = percent(result["val_accuracy"]) + (f" {what}" if what else "")
        if result.get("still_val_accuracy") is not None:
            text += f" (still videos {percent(result['still_val_accuracy'])})"
        if result.get("train_videos"):
            text += f" after {result['train_videos']:,} videos"
        return text
    if "reports" in result and "rung" in result:  # dyreg_edu.experiments.symmetry: the gradient, per start
        return "; ".join(f"{anchors}: {r['common_fraction']:.0%} of the gradient shared, signal to noise "
                         f"{r['signal_to_noise']:.2f}, towards a digit {r['towards_digit']:+.3f}"
                         for anchors, r in result["reports"].items()) + f" (rung {result['rung']})"
    if "bn_statistics_as_saved" in result:  # tools/diagnose_state.py: a trained run measured again
        saved, again = result["bn_statistics_as_saved"], result["bn_statistics_recomputed"]
        text = (f"{percent(saved['val_accuracy'])} on {result['measured_on_videos']:,} videos "
                f"(BatchNorm statistics recomputed: {percent(again['val_accuracy'])}); "
                f"node spread {saved['regions']['spread']:.4f}, region size {saved['regions']['size']:.2f}")
        return text + f", of the run `{result['run']}` ({result['train_videos']:,} videos)"
    return None


def code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}"


def runs_of(folder: Path) -> list[tuple[str, dict, str]]:
    """``(name, result, outcome)`` of every run in ``folder``, by name."""
    found = []
    for path in sorted(folder.glob("*.json")):
        result = json.loads(path.read_text())
        said = outcome(result) if isinstance(result, dict) else None
        if said is not None:
            found.append((path.stem, result, said))
    return found


def folders(root: Path = RESEARCH) -> list[str]:
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir())


def check_questions(root: Path = RESEARCH) -> None:
    present = set(folders(root))
    unasked, missing = sorted(present - set(QUESTIONS)), sorted(set(QUESTIONS) - present)
    if unasked or missing:
        raise ValueError(f"results/research: folders without a question in tools/research_index.py QUESTIONS: "
                         f"{unasked}; questions without a folder: {missing}")


def render(root: Path = RESEARCH) -> str:
    """The index, as Markdown."""
    root = Path(root)
    check_questions(root)
    runs = {name: runs_of(root / name) for name in QUESTIONS}
    every = [result for found in runs.values() for _, result, _ in found]
    before = sum(str(result.get("date", "")) < CLI_DATE for result in every)
    lines = [
        "# Research runs",
        "",
        "<!-- Generated by tools/research_index.py from the result files; do not edit. "
        "tests/test_results.py fails when it is stale: run `python tools/research_index.py`. -->",
        "",
        "The runs that are not the paper's tables (those are in `results/multisync/`), one folder per question: "
        "the book's research log, Chapter 11 (and a few runs of Chapters 6 and 7). Most of them use research "
        "switches that are **not in the paper** (`dyreg_edu.experiments`, each off by default). A folder holds "
        "each run's result file (`<run>.json`: accuracy, configuration, command, commit, device, date and wall "
        "time), its training log thinned to every tenth step and every validation (`logs/<run>.jsonl.gz`, read "
        "by `dyreg_edu.runs.read_log`), and for another mini design its Table 5 (`table5.md`). Below, a table "
        "per folder, a row per run: what the run is (the paper's model, or the switches outside the paper it "
        "uses, box supervision named as such), its result on the validation videos (on still videos too where "
        "measured), its date and commit, and the command that made it.",
        "",
        f"**Commands are as recorded.** {before} of the {len(every)} runs were made before commit {CLI_COMMIT} "
        f"({CLI_DATE}), and their commands use the command line of their own commit, before the research "
        "switches moved into `dyreg_edu.experiments`; today the same settings are written:",
        "",
        "| recorded | today |",
        "|---|---|",
        "| `--block node_motion=True --block motion_from=centre --block position_scale=25` "
        "| `--experiment motion:node_motion=True,motion_from=centre,position_scale=25` |",
        "| `--block residual_scale_init=1.0`, `--block gamma_init=0.3` "
        "| `--experiment init:residual_scale=1.0`, `--experiment init:gamma=0.3` |",
        "| `--head-init PATH.pt --freeze-head` | `--experiment warm_start:head=PATH.pt,freeze_head=True` |",
        "| `--regions-init PATH.pt --freeze-regions` "
        "| `--experiment warm_start:regions=PATH.pt,freeze_regions=True` (one `warm_start` with `head` too) |",
        "| `--box-loss 1 --box-loss-steps 500` | `--experiment box_loss:weight=1,steps=500` |",
        "| `--oracle-jitter 0.85` | `--experiment oracle_jitter:spread=0.85` |",
        "| `python -m dyreg_edu.relation` | `python -m dyreg_edu.experiments.relation` |",
        "| `python tools/oracle_nodes_probe.py` | `python -m dyreg_edu.experiments.oracle_nodes_probe` |",
        "| `config(..., block={\"node_motion\": True, \"position_scale\": 100.0})` "
        "| `config(..., experiments={\"motion\": {\"node_motion\": True, \"position_scale\": 100.0}})` |",
        "",
        "Their result files' configurations load unchanged (`TrainConfig.from_dict` moves the old settings into "
        "`experiments`). The output paths in the recorded commands (`--out results/multisync/mini/...`) are "
        "those of before the results moved here.",
    ]
    for name, (question, where) in QUESTIONS.items():
        lines += ["", f"## `{name}/`", "", f"{question} ({where})", ""]
        tables = sorted(p.name for p in (root / name).glob("table*.md"))
        if tables:
            lines += ["Tables: " + ", ".join(f"[`{t}`]({name}/{t})" for t in tables), ""]
        lines += ["| run | what it is | result | made | command |", "|---|---|---|---|---|"]
        for run, result, said in runs[name]:
            cells = [f"`{run}`", what_it_is(result), said,
                     f"{result.get('date', 'no date')}, commit {result.get('commit', '?')}",
                     code(str(result.get('command', 'no command recorded')))]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only check that the committed index is up to date")
    args = p.parse_args(argv)
    try:
        text = render()
    except ValueError as error:
        p.exit(2, f"research_index: {error}\n")
    if args.check:
        if not INDEX.exists() or INDEX.read_text() != text:
            print(f"{INDEX.relative_to(REPO)} is stale: run python tools/research_index.py", file=sys.stderr)
            return 1
        print(f"{INDEX.relative_to(REPO)} is up to date")
        return 0
    INDEX.write_text(text)
    print(f"wrote {INDEX.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
