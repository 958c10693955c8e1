"""The course pages: the syllabus's time table against its result file, the chapter-time recorder, the
syllabus's citations and pages, the coursework's instructor notes, and the numbers Projects 6 and 7's notes give."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools import chapter_times, notebooks  # noqa: E402

SYLLABUS = ROOT / "book" / "syllabus.md"
COURSEWORK = ROOT / "book" / "10_coursework.md"


def _block(text: str) -> str:
    begin = text.index(chapter_times.TABLE_BEGIN) + len(chapter_times.TABLE_BEGIN)
    return text[begin:text.index(chapter_times.TABLE_END)].strip()


# --------------------------------------------------------------------------- the time table


def test_syllabus_time_table_is_the_result_files():
    assert _block(SYLLABUS.read_text(encoding="utf-8")) == chapter_times.table(ROOT)


def test_every_notebook_chapter_was_measured_at_full_size_with_provenance():
    record = json.loads((ROOT / chapter_times.RESULT).read_text(encoding="utf-8"))
    chapters = [p for p in chapter_times.chapter_paths(ROOT) if p.suffix == ".ipynb"]
    assert len(chapters) >= 10
    for path in chapters:
        entry = record["chapters"][path.relative_to(ROOT).as_posix()]
        assert entry["fast"] is False and entry["code_cells"] > 0
        assert 0 < entry["cells_seconds"] <= entry["wall_seconds"]
        assert entry["kernel_cpu_seconds"] > 0
        for key in ("command", "commit", "device", "date", "threads", "load_average_before"):
            assert entry[key], (path.name, key)


def test_table_rows_follow_the_toc_and_say_what_is_not_measured(tmp_path):
    rows = chapter_times.table(ROOT).splitlines()[2:]
    assert len(rows) == len(chapter_times.chapter_paths(ROOT)) + 1 and rows[-1].startswith("| **all chapters** |")
    assert any("Coursework" in r and "nothing to run" in r for r in rows)
    # with no result file every notebook row says so instead of showing a number
    (tmp_path / "book").mkdir()
    for name in ("_toc.yml",):
        (tmp_path / name).write_text((ROOT / name).read_text())
    for path in chapter_times.chapter_paths(ROOT):
        (tmp_path / path.relative_to(ROOT)).write_bytes(path.read_bytes())
    empty = chapter_times.table(tmp_path).splitlines()[2:]
    assert len(empty) == len(rows) - 1                       # no total without every chapter
    assert all("not measured" in r for r in empty if "Coursework" not in r)


def test_synced_replaces_only_the_marked_block():
    text = f"before\n{chapter_times.TABLE_BEGIN}\nold | table\n{chapter_times.TABLE_END}\nafter\n"
    new = chapter_times.synced(text, ROOT)
    assert new.startswith("before\n") and new.endswith("after\n") and "old | table" not in new
    assert _block(new) == chapter_times.table(ROOT)


def test_cell_seconds_reads_nbclient_timing():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("x = 1", metadata={"execution": {
            "iopub.execute_input": "2026-01-01T10:00:00.000000Z", "shell.execute_reply": "2026-01-01T10:00:02.500000Z"}}),
        nbformat.v4.new_code_cell("y = 2"),   # no timing recorded: left out
        nbformat.v4.new_code_cell("z = 3", metadata={"execution": {
            "iopub.execute_input": "2026-01-01T10:00:03Z", "shell.execute_reply": "2026-01-01T10:01:03Z"}}),
    ])
    assert chapter_times.cell_seconds(nb) == [(1, 2.5), (3, 60.0)]


def test_words_count_prose_not_code_or_display_maths():
    text = "Two words.\n\n```python\nthis = is(code)\n```\n\n$$\na = b + c\n$$\n\n<!-- a comment -->\n" \
           ":::{dropdown} Title\nInside counts.\n:::\n"
    assert chapter_times.words(text) == 2 + 2 + 2   # "Two words", "dropdown Title", "Inside counts"


# --------------------------------------------------------------------------- the syllabus page


def test_syllabus_is_in_the_toc_before_the_coursework():
    docs = notebooks.toc_documents(ROOT)
    assert docs.index("book/syllabus") == docs.index("book/10_coursework") - 1


def test_syllabus_citations_and_pages_exist():
    text = SYLLABUS.read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(encoding="utf-8"), re.M))
    cited = set(re.findall(r"\{cite\}`([^`]+)`", text))
    assert {"cho2014gru", "vaswani2017attention", "bahdanau2015attention", "gilmer2017mpnn"} <= cited
    assert cited <= keys
    for doc in re.findall(r"\{doc\}`([^`]+)`", text):
        assert (ROOT / "book" / f"{doc}.ipynb").exists() or (ROOT / "book" / f"{doc}.md").exists(), doc
    weeks = re.findall(r"^### Week (\d)", text, re.M)
    assert weeks == [str(w) for w in range(1, 7)]
    # every chapter of the book is taught in some week
    for path in chapter_times.chapter_paths(ROOT):
        assert f"{{doc}}`{path.stem}`" in text, path.stem


# --------------------------------------------------------------------------- the coursework page


def _projects() -> dict[int, str]:
    text = COURSEWORK.read_text(encoding="utf-8")
    parts = re.split(r"^## Project (\d+):", text, flags=re.M)
    return {int(number): body for number, body in zip(parts[1::2], parts[2::2])}


def test_every_project_has_instructor_notes_in_a_dropdown():
    projects = _projects()
    assert sorted(projects) == list(range(1, 8))
    for number, body in projects.items():
        assert re.search(r"^:::\{dropdown\} Instructor notes", body, re.M), number
        assert "**Specific criteria (40).**" in body, number


def test_projects_1_and_4_use_the_ladder_not_chapter_7s_mini_tables():
    projects = _projects()
    assert "rung_config(\"where\"" in projects[1] and "--table 7" not in projects[1]
    assert "--rung sync2" in projects[4] and "--variant static" not in projects[4]
    # the sliders' project uses both explorers
    assert "region_explorer(" in projects[7] and "alpha_explorer(" in projects[7]


def test_committed_numbers_quoted_in_projects_1_and_4():
    ladder = ROOT / "results" / "multisync" / "ladder"
    load = lambda rung, name: json.loads((ladder / rung / f"{name}.json").read_text())  # noqa: E731
    projects = _projects()
    for name in ("dyreg", "dyreg_seed1", "fixed", "resnet18"):
        assert f"{load('where', name)['val_accuracy']:.2f}%" in projects[1], name
    plain = load("sync2", "resnet18")
    assert f"{plain['val_accuracy']:.2f}%" in projects[4] and f"{plain['still_val_accuracy']:.2f}%" in projects[4]


# --------------------------------------------------------------------------- Project 7's expected outcomes


def _share_inside(regions, boxes, size=16):
    """Project 7's measure, batched: ``regions [..., 4]``, ``boxes [..., 4]`` in map pixels -> ``[...]``."""
    from dyreg_edu.kernels import region_kernels

    centres = torch.arange(size) + 0.5
    inside_x = (centres >= boxes[..., 0:1]) & (centres < boxes[..., 2:3])
    inside_y = (centres >= boxes[..., 1:2]) & (centres < boxes[..., 3:4])
    mask = (inside_y[..., :, None] & inside_x[..., None, :]).float()
    return (region_kernels(regions, size, size) * mask).sum((-1, -2))


@pytest.fixture(scope="module")
def where():
    from dyreg_edu import train as trainer

    model, val = trainer.load_trained(ROOT / "checkpoints" / "ladder" / "where_dyreg.pt")
    return trainer, model, val


def test_project7_part_a_shares(where):
    from dyreg_edu.regions import initial_size, regions_from_boxes

    _, model, val = where
    assert (model.graph.height, model.graph.width, val.size // model.graph.height) == (16, 16, 4)
    batch = val.batch([0])
    boxes = batch["boxes"][0, 0].float() / 4                       # [2, 4]: upper digit first
    assert boxes[0, 1] < boxes[1, 1]
    start = torch.tensor([8.0, 8.0, initial_size(16, 3), initial_size(16, 3)])
    assert start[2].item() == pytest.approx(4.667, abs=1e-3)
    shares = _share_inside(start.expand(2, 4), boxes)
    assert all(0.05 < s < 0.2 for s in shares.tolist())           # "about a tenth" in each box
    upper = regions_from_boxes(batch["boxes"][0, 0].float(), 64, 16, 16)[0]
    assert upper[2].item() == pytest.approx(3.0) and upper[3].item() == pytest.approx(3.0)
    assert _share_inside(upper[None], boxes[0][None]).item() == pytest.approx(0.94, abs=0.01)
    assert _share_inside(upper[None], boxes[1][None]).item() == 0.0
    sized = lambda s: torch.cat([upper[:2], torch.tensor([s, s])])[None]  # noqa: E731  (same centre, half-extent s)
    assert _share_inside(sized(1.5), boxes[0][None]).item() == pytest.approx(1.0)
    assert _share_inside(sized(4.0), boxes[0][None]).item() == pytest.approx(0.74, abs=0.01)
    assert _share_inside(sized(3.2), boxes[0][None]).item() >= 0.9 > _share_inside(sized(3.3), boxes[0][None]).item()


def test_project7_part_b_inversion():
    from dyreg_edu.regions import regions_from_offsets

    anchor = torch.tensor([[8.0, 8.0]])
    code = torch.tensor([[0.549, -0.549, -1.299, -1.299]])
    paper = torch.tensor([[0.549, -0.549, -0.288, -0.288]])
    target = torch.tensor([12.0, 4.0, 2.0, 2.0])
    assert torch.allclose(regions_from_offsets(code, anchor, 16, 16)[0], target, atol=2e-3)
    assert torch.allclose(regions_from_offsets(paper, anchor, 16, 16, size_plus_one=False, clamp_centers=False)[0],
                          target, atol=2e-3)
    gamma_zero = regions_from_offsets(torch.zeros(1, 4), anchor, 16, 16)[0]
    assert torch.allclose(gamma_zero, torch.tensor([8.0, 8.0, 16 / 6 + 2, 16 / 6 + 2]))
    edge = regions_from_offsets(torch.tensor([[1.354, 5.0, -10.0, 0.0]]), anchor, 16, 16)[0]
    assert edge[0].item() == pytest.approx(15.0, abs=2e-3) and edge[1].item() == 15.0   # the code's clamp
    assert 1.0 < edge[2].item() < 1.001                                                  # the code's smallest size


def test_project7_part_c_trained_regions(where):
    trainer, model, val = where
    seed1, _ = trainer.load_trained(ROOT / "checkpoints" / "ladder" / "where_dyreg_seed1.pt")
    batch = val.batch(range(20))
    boxes = batch["boxes"].float() / 4                              # [B, T, 2, 4]: upper digit first
    with torch.no_grad():
        for name, net in (("seed 0", model), ("seed 1", seed1)):
            regions = net(trainer.as_input(batch["video"]), return_aux=True)[1]["regions"]  # [B, T, N, 4]
            per_box = [_share_inside(regions, boxes[:, :, None, d].expand_as(regions)).mean().item() for d in (0, 1)]
            if name == "seed 0":   # on the lower digit, almost nothing on the upper
                assert per_box[1] > 0.5 and per_box[0] < 0.05, per_box
            else:                  # wide, over the upper half: most weight up, about a fifth in the upper box
                from dyreg_edu.kernels import region_kernels
                upper_half = region_kernels(regions, 16, 16)[..., :8, :].sum((-1, -2)).mean().item()
                assert upper_half > 0.75 and 0.1 < per_box[0] < 0.3 and per_box[1] < 0.05, (upper_half, per_box)
                assert regions[..., 2:].mean().item() > 2 * 16                # half-extent several frame widths


# --------------------------------------------------------------------------- Project 6's numbers and runs


def _result(path: str) -> dict:
    return json.loads((ROOT / "results" / path).read_text())


def _what(result: dict) -> str:
    """What a run is, as the record of the research runs says (the paper's model, or its switches outside it)."""
    from tools.research_index import what_it_is

    return what_it_is(result)


def _papers_model(result: dict) -> bool:
    return _what(result).endswith("the paper's model, no switch outside the paper")


def test_project6_commands_use_flags_that_exist():
    import subprocess

    commands = re.findall(r"^python -m (dyreg_edu\.\w+) (.*)$", _projects()[6], re.M)
    assert {module for module, _ in commands} == {"dyreg_edu.ladder", "dyreg_edu.train"}
    helps = {}
    for module, args in commands:
        if module not in helps:
            helps[module] = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                                           cwd=ROOT, check=True).stdout
        for flag in re.findall(r"(--[a-z][a-z-]*)", args):
            assert re.search(rf"{flag}\b", helps[module]), (module, flag)
    from dyreg_edu.train import parser

    for module, args in commands:   # the trainer's lines parse as they stand
        if module == "dyreg_edu.train":
            assert parser().parse_args(args.split()).variant == "dyreg"


def test_project6_numbers_are_the_result_files_and_each_run_is_named_for_what_it_is():
    text = _projects()[6]
    assert "contrast" not in text.splitlines()[0]
    notes = text[text.index(":::{dropdown} Instructor notes"):]
    # the paper's model, level: Table 5 at the mini scale, and four times the training with 14-pixel digits
    said = {"multisync/mini": "DyReg at {d:.2f}% and Fixed at {f:.2f}%",
            "research/four_times_longer": "({v:,} videos), {d:.2f}% and {f:.2f}%"}
    for folder, phrase in said.items():
        dyreg, fixed = _result(f"{folder}/dyreg.json"), _result(f"{folder}/fixed.json")
        assert _papers_model(dyreg) and _papers_model(fixed), folder
        assert dyreg["train_videos"] == fixed["train_videos"], folder
        assert phrase.format(d=dyreg["val_accuracy"], f=fixed["val_accuracy"], v=dyreg["train_videos"]) in notes, folder
    # the run that pulled ahead is a research setting, and the notes say so
    taught = _result("research/oracle_head/taught_regions_released.json")
    fixed = _result("research/oracle_head/fixed.json")
    assert f"DyReg reached {taught['val_accuracy']:.2f}% against {fixed['val_accuracy']:.2f}% for Fixed" in notes
    assert taught["train_videos"] == fixed["train_videos"]
    for run in (taught, fixed):
        assert not _papers_model(run) and "a head trained on the ground-truth boxes" in _what(run)
    assert "box supervision" in _what(taught) and "*box supervision*" in notes and "research setting" in notes


def test_project6_no_committed_run_of_the_papers_model_on_the_mini_task_has_dyreg_ahead_of_fixed():
    """The notes' "no run of the paper's model has put DyReg ahead of Fixed at the mini scale", against every
    committed pair of DyReg and Fixed runs of the paper's model on the mini task (Chapter 7's and the research
    runs: same folder, same name but the variant, same number of videos): DyReg may not be two standard errors
    or more above Fixed. The ladder's easier rungs are not the mini task (see the next test)."""
    results = ROOT / "results"
    folders = [results / "multisync" / "mini", *sorted((results / "research").glob("*/"))]
    pairs = 0
    for folder in folders:
        for path in sorted(folder.glob("dyreg*.json")):
            partner = folder / path.name.replace("dyreg", "fixed", 1)
            if not partner.exists():
                continue
            dyreg, fixed = json.loads(path.read_text()), json.loads(partner.read_text())
            if not (_papers_model(dyreg) and _papers_model(fixed)) or dyreg["train_videos"] != fixed["train_videos"]:
                continue
            videos = min(dyreg["val_videos"], fixed["val_videos"])
            two_errors = 2 * 100 * (0.25 / videos) ** 0.5          # percent, the widest (p = 1/2)
            assert dyreg["val_accuracy"] - fixed["val_accuracy"] < two_errors, (path, dyreg["val_accuracy"],
                                                                                 fixed["val_accuracy"])
            pairs += 1
    assert pairs >= 5, pairs


def test_projects_4_and_6_quote_the_book_s_sync2_runs_of_the_papers_model():
    """The seed-0 runs of the ladder's relation rung, as Projects 4 and 6's notes give them: the paper's model,
    the same number of videos, each accuracy as in its file."""
    dyreg, fixed, plain = (_result(f"multisync/ladder/sync2/{v}.json") for v in ("dyreg", "fixed", "resnet18"))
    assert _papers_model(dyreg) and _papers_model(fixed) and dyreg["train_videos"] == fixed["train_videos"]
    projects = _projects()
    four = " ".join(projects[4][projects[4].index(":::{dropdown} Instructor notes"):].split())
    six = " ".join(projects[6][projects[6].index(":::{dropdown} Instructor notes"):].split())
    assert f"The plain model's {plain['val_accuracy']:.2f}% (still videos {plain['still_val_accuracy']:.2f}%)" in four
    assert (f"{dyreg['train_videos']:,} videos each (`results/multisync/ladder/sync2/`): DyReg "
            f"{dyreg['val_accuracy']:.2f}% (still videos {dyreg['still_val_accuracy']:.2f}%), Fixed "
            f"{fixed['val_accuracy']:.2f}% (still videos {fixed['still_val_accuracy']:.2f}%)") in four
    assert (f"{dyreg['val_accuracy']:.2f}% against {fixed['val_accuracy']:.2f}% for Fixed after "
            f"{dyreg['train_videos']:,} videos (seed 0") in six
    dyreg1, fixed1 = (_result(f"multisync/ladder/sync2/{v}_seed1.json") for v in ("dyreg", "fixed"))
    assert dyreg1["val_accuracy"] < fixed1["val_accuracy"] and _sync2_parted("dyreg_seed1") is None  # "turned", "never"
    assert (f"and with it the order turned: DyReg {dyreg1['val_accuracy']:.2f}% (still videos "
            f"{dyreg1['still_val_accuracy']:.2f}%), Fixed {fixed1['val_accuracy']:.2f}% (still videos "
            f"{fixed1['still_val_accuracy']:.2f}%); DyReg's nine nodes never parted") in four
    assert (f"in seed 1 its nodes never parted and it ended at {dyreg1['val_accuracy']:.2f}% against Fixed's "
            f"{fixed1['val_accuracy']:.2f}%") in six
    hours = sorted(r["wall_seconds"] / 3600 for r in (dyreg, fixed, dyreg1, fixed1))
    cost = f"The book's four graph runs on this rung took {hours[0]:.1f} to {hours[-1]:.1f} hours each"
    assert cost in " ".join(projects[4].split())


def _sync2_parted(name: str) -> int | None:
    """The step from which a sync2 DyReg run's nodes stay more than a tenth of the map apart, as Chapter 6's
    lines under its table compute it (``None``: never)."""
    from dyreg_edu.runs import read_log

    rows = [r for r in read_log(ROOT / "results" / "multisync" / "ladder" / "sync2" / "logs" / f"{name}.jsonl")
            if "regions" in r]
    apart = [r["regions"]["spread"] > 0.1 for r in rows]
    return next((r["step"] for i, r in enumerate(rows) if all(apart[i:])), None)


def test_the_colab_gpu_estimate_quoted_is_what_gpu_estimate_gives():
    """The syllabus's T4 figures for the paper scale are chapter 6's cell's estimate, rounded as quoted."""
    from dyreg_edu import gpu_estimate
    from dyreg_edu.train import config

    estimate = gpu_estimate.epoch_time(config("dyreg", "paper"), "Tesla T4")
    text = " ".join(SYLLABUS.read_text(encoding="utf-8").split())
    assert estimate["kind"] == "estimate"
    epoch_hours, run_hours = round(estimate["seconds_per_epoch"] / 3600), round(estimate["run_seconds"] / 3600, -1)
    assert f"about {epoch_hours:.0f} hours an epoch and {run_hours:.0f} hours" in text, (epoch_hours, run_hours)


def test_chapter6_s_text_quotes_the_sync2_runs_as_their_files_give_them():
    """Chapter 6's words on the relation rung (its "What this shows" and its summary) against the result files."""
    dyreg, fixed, plain = (_result(f"multisync/ladder/sync2/{v}.json") for v in ("dyreg", "fixed", "resnet18"))
    chapter = nbformat.read(ROOT / "book" / "06_training.ipynb", as_version=4)
    words = " ".join(" ".join(c.source.split()) for c in chapter.cells if c.cell_type == "markdown")
    assert (f"climbs to {dyreg['val_accuracy']:.2f}%, while its accuracy on still videos stays at chance "
            f"({dyreg['still_val_accuracy']:.2f}%)") in words
    assert f"ends at {fixed['val_accuracy']:.2f}%; the plain model stays at {plain['val_accuracy']:.2f}%" in words
    assert (f"DyReg reaches {dyreg['val_accuracy']:.2f}% against Fixed's {fixed['val_accuracy']:.2f}% and the plain "
            f"model's {plain['val_accuracy']:.2f}% (seed 0") in words
    dyreg1, fixed1 = (_result(f"multisync/ladder/sync2/{v}_seed1.json") for v in ("dyreg", "fixed"))
    below = "below" if dyreg1["val_accuracy"] < fixed1["val_accuracy"] else "above"
    assert (f"There DyReg ends at {dyreg1['val_accuracy']:.2f}% (still videos {dyreg1['still_val_accuracy']:.2f}%) "
            f"and Fixed at {fixed1['val_accuracy']:.2f}% (still videos {fixed1['still_val_accuracy']:.2f}%): "
            f"DyReg {below} Fixed") in words
    assert f"DyReg ends at {dyreg1['val_accuracy']:.2f}%, {below} Fixed's {fixed1['val_accuracy']:.2f}%" in words
    # "in seed 0 the nine nodes move apart ... shortly before the accuracy leaves chance. In seed 1 they never do"
    from dyreg_edu.ladder import milestones
    from dyreg_edu.runs import read_log

    cleared = milestones(read_log(ROOT / "results" / "multisync" / "ladder" / "sync2" / "logs" / "dyreg.jsonl"),
                         50.0, 2_000)["left_ceiling"]
    parted = _sync2_parted("dyreg")
    assert parted is not None and cleared is not None and 0 < cleared - parted <= 2_500, (parted, cleared)
    assert _sync2_parted("dyreg_seed1") is None and "In seed 1 they never do" in words
