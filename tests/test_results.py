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
                assert f"- `{path.stem}`: " in text, path
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
