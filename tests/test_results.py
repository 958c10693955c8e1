"""results/: the paper's tables in results/multisync/, the research runs in results/research/<question>/
with a generated index (tools/research_index.py)."""

import json

import pytest

from tools import research_index

REPO = research_index.REPO


def test_the_research_index_is_what_the_result_files_say():
    """results/research/README.md is generated: regenerating it gives exactly the committed file
    (run python tools/research_index.py after adding or changing a run)."""
    assert research_index.INDEX.read_text() == research_index.render()
    assert research_index.main(["--check"]) == 0


def test_every_research_folder_has_a_question_and_every_run_a_line(tmp_path):
    research_index.check_questions()
    text = research_index.INDEX.read_text()
    for folder in research_index.folders():
        assert f"## `{folder}/`" in text
        for path in (research_index.RESEARCH / folder).glob("*.json"):
            if "rows" not in json.loads(path.read_text()):  # a table is not a run
                assert f"\n| `{path.stem}` | " in text, path
    (tmp_path / "centre_step").mkdir()
    (tmp_path / "unasked").mkdir()
    with pytest.raises(ValueError, match=r"without a question .*\['unasked'\]"):
        research_index.render(tmp_path)


def test_a_runs_outcome_names_what_its_accuracy_counts():
    model = {"val_accuracy": 83.9, "still_val_accuracy": 40.9, "train_videos": 192000, "config": {"variant": "oracle"}}
    assert research_index.outcome(model) == "83.90% (still videos 40.90%) after 192,000 videos"
    graph_alone = {"val_accuracy": 100.0, "curve": [], "train_videos": 64, "config": {"inputs": "steps"}}
    assert research_index.outcome(graph_alone) == "100.00% sync flags right after 64 videos"
    label = {**graph_alone, "config": {"inputs": "steps", "target": "label"}}
    assert research_index.outcome(label).startswith("100.00% labels right")
    assert research_index.outcome({"table": "5", "rows": []}) is None


def test_every_run_says_whether_it_is_the_papers_model():
    """Each run names the switches outside the paper it uses, box supervision as such; a run with none
    is the paper's model, and a program that is no model says so."""
    paper = {"config": {"variant": "dyreg", "block": {}}}
    assert research_index.what_it_is(paper) == "DyReg: the paper's model, no switch outside the paper"
    taught = {"config": {"variant": "dyreg", "block": {"node_motion": True, "motion_from": "centre"},
                         "box_loss": 1.0, "head_init": "checkpoints/multisync_mini_px14_step5_oracle_centre.pt"}}
    said = research_index.what_it_is(taught)
    assert said.startswith("DyReg; **not in the paper**: ")
    for words in ("`box_loss` (box supervision)", "`motion`", "a head trained on the ground-truth boxes"):
        assert words in said, said
    from_taught = {"config": {"variant": "dyreg", "block": {},
                              "regions_init": "checkpoints/multisync_mini_px14_step5_dyreg_taught_throughout.pt"}}
    assert "regions taught by the boxes: box supervision" in research_index.what_it_is(from_taught)
    grid = {"config": {"variant": "dyreg", "block": {"anchors": "grid"}}}
    assert "**not in the paper**: grid anchors" in research_index.what_it_is(grid)
    assert "no model" in research_index.what_it_is({"config": {"inputs": "steps"}, "curve": []})
    text = research_index.INDEX.read_text()
    rows = [line for line in text.splitlines() if "`box_loss` (box supervision)" in line]
    assert rows and all("**not in the paper**" in line for line in rows)


def tracked_text_lines() -> dict:
    """Lines of every text file that git tracks (a file with a NUL byte or not UTF-8 is not text)."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode()
    lines = {}
    for name in filter(None, names.split("\0")):
        path = REPO / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        lines[name] = data.count(b"\n")
    return lines


def test_logs_are_a_small_share_of_the_repositorys_text():
    """Committed logs are gzipped (``*.jsonl.gz``, which ``read_log`` reads by either name): JSON-line
    files stay under 15% of the text lines that git tracks, and none is left plain under results/."""
    lines = tracked_text_lines()
    logs = sum(n for name, n in lines.items() if name.endswith(".jsonl"))
    assert logs < 0.15 * sum(lines.values()), f"{logs} of {sum(lines.values())} text lines are JSON-line logs"
    assert not [name for name in lines if name.startswith("results/") and name.endswith(".jsonl")]
