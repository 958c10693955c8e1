"""The status table (tools/status_table.py): README.md and book/intro.md say what the result files say;
the README stays a short guide for a newcomer."""

import re

import pytest

from tools import status_table

REPO = status_table.REPO


def test_the_tables_are_what_the_results_say():
    """Regenerating the table gives exactly the committed README.md and book/intro.md
    (run python tools/status_table.py after adding or changing a result)."""
    assert status_table.stale() == []
    assert status_table.main(["--check"]) == 0


def test_the_check_fails_on_a_changed_number(tmp_path):
    (tmp_path / "book").mkdir()
    readme = (REPO / "README.md").read_text()
    number = re.search(r"\| DyReg (\d+\.\d\d)%", readme).group(1)
    (tmp_path / "README.md").write_text(readme.replace(f"DyReg {number}%", "DyReg 99.99%", 1))
    (tmp_path / "book" / "intro.md").write_text((REPO / "book" / "intro.md").read_text())
    assert status_table.stale(files=tmp_path) == ["README.md"]


def test_a_changed_result_changes_the_table(monkeypatch, capsys):
    load = status_table.load

    def changed(path):
        result = load(path)
        if path.name == "dyreg.json" and path.parent.name == "where":
            result = {**result, "val_accuracy": 12.34}
        return result

    monkeypatch.setattr(status_table, "load", changed)
    assert "DyReg 12.34%" in status_table.render("README.md", status_table.rows())
    assert status_table.stale() == list(status_table.TARGETS)
    assert status_table.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err


def test_every_row_links_to_files_that_exist():
    for row in status_table.rows():
        assert row.status in status_table.STATUSES, row
        for _, path in row.where:
            assert (REPO / path).exists(), path


def test_the_block_must_be_there_once():
    block = status_table.render("README.md", [])
    with pytest.raises(ValueError, match="must hold one"):
        status_table.replace_block("no table here", block, "README.md")
    with pytest.raises(ValueError, match="must hold one"):
        status_table.replace_block(f"{status_table.START}\n{status_table.END}\n" * 2, block, "README.md")


def test_the_book_links_chapters_by_name_and_files_on_the_repository():
    assert status_table.link("chapter 6", "book/06_training.ipynb", "book/intro.md") == "[chapter 6](06_training.ipynb)"
    assert status_table.link("results", "results/multisync/mini/", "book/intro.md").endswith(
        "/tree/main/results/multisync/mini)")
    assert status_table.link("test", "tests/test_models.py", "README.md") == "[test](tests/test_models.py)"


def test_the_readme_is_a_short_guide():
    readme = (REPO / "README.md").read_text()
    assert len(readme.split()) <= 1500
    for command in ("make book", "make test", "tools/README.md"):
        assert command in readme


def test_no_run_outside_the_paper_is_called_the_papers_contrast():
    for name in ("README.md", "book/intro.md"):
        text = (REPO / name).read_text().lower()
        assert "the paper's contrast" not in text and "the paper’s contrast" not in text, name
