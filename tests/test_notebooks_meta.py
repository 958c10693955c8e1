"""The chapter notebooks carry what the book and Colab need (tools/notebooks.py check)."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools import notebooks as nbtool

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_every_toc_notebook_passes_check():
    problems = nbtool.check(root=REPO_ROOT)
    assert not problems, "\n".join(problems)


def test_repository_url_has_one_home():
    url, branch = nbtool.repository(REPO_ROOT)
    assert url.startswith("https://github.com/") and branch
    # the rest of the repository gets it from _config.yml, not by copy
    for nb in nbtool.toc_notebooks(REPO_ROOT):
        cells = nbformat.read(str(nb), as_version=4).cells
        setup = [c for c in cells if nbtool.SETUP_TAG in c.metadata.get("tags", [])]
        assert len(setup) == 1 and url in setup[0].source


# ---------------------------------------------------------------------------
# The checker itself, on a throw-away book
# ---------------------------------------------------------------------------

URL = "https://github.com/someone/somebook"


@pytest.fixture
def book(tmp_path):
    (tmp_path / "_config.yml").write_text(
        f"title: t\nrepository:\n  url: {URL}\n  path_to_book: ''\n  branch: main\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/ch1\n")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Chapter 1"),
                nbformat.v4.new_code_cell("print(1 + 1)")]
    nb.metadata["kernelspec"] = {"name": "conda-env-py37-py", "display_name": "x", "language": "python"}
    path = tmp_path / "book" / "ch1.ipynb"
    nbformat.write(nb, str(path))
    return tmp_path, path


def _fake_execute(path: Path, outputs=None):
    nb = nbformat.read(str(path), as_version=4)
    n = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            n += 1
            cell.execution_count = n
            cell.outputs = []
    nb.cells[-1].outputs = outputs if outputs is not None else [
        nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    nbtool.normalize_metadata(nb)
    nbformat.write(nb, str(path))


def test_toc_lists_only_notebooks(book):
    root, path = book
    assert nbtool.toc_notebooks(root) == [path]


def test_check_reports_a_raw_notebook(book):
    root, path = book
    problems = "\n".join(nbtool.check(root=root))
    assert "Colab badge" in problems
    assert "setup cell" in problems
    assert "'conda-env-py37-py'" in problems
    assert "no stored outputs" in problems


def test_sync_then_execute_passes(book):
    root, path = book
    assert nbtool.sync_colab([path], root) == [path]
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].source == "# Chapter 1"  # the title stays on top
    nb.cells = nb.cells[1:]
    assert nb.cells[0].source == (
        f'<a href="https://colab.research.google.com/github/someone/somebook/blob/main/book/ch1.ipynb" '
        f'target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" '
        f'alt="Open In Colab"/></a>')
    assert "remove-cell" in nb.cells[0].metadata["tags"]
    assert f'"{URL}"' in nb.cells[1].source
    assert '"google.colab" in sys.modules' in nb.cells[1].source
    assert nb.cells[2].source == "print(1 + 1)"
    _fake_execute(path)
    assert nbtool.check(root=root) == []
    # idempotent: a second sync changes nothing, outputs kept
    assert nbtool.sync_colab([path], root) == []
    assert nbtool.check(root=root) == []


def test_setup_cell_is_harmless_outside_colab(book):
    root, _ = book
    exec(compile(nbtool.setup_source(root), "<setup>", "exec"), {})


def test_check_catches_error_outputs(book):
    root, path = book
    nbtool.sync_colab([path], root)
    err = nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])
    _fake_execute(path, outputs=[err])
    problems = nbtool.check(root=root)
    assert len(problems) == 1 and "ValueError: boom" in problems[0]


def test_check_catches_out_of_order_execution(book):
    root, path = book
    nbtool.sync_colab([path], root)
    _fake_execute(path)
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[2].execution_count, nb.cells[3].execution_count = 5, 2
    nbformat.write(nb, str(path))
    assert any("out of order" in p for p in nbtool.check(root=root))


def test_url_change_in_config_is_detected_and_synced(book):
    root, path = book
    nbtool.sync_colab([path], root)
    _fake_execute(path)
    cfg = root / "_config.yml"
    cfg.write_text(cfg.read_text().replace("someone/somebook", "other/place"))
    problems = nbtool.check(root=root)
    assert any("badge" in p for p in problems) and any("setup cell" in p for p in problems)
    nbtool.sync_colab([path], root)
    nb = nbformat.read(str(path), as_version=4)
    assert "github/other/place/blob/main/book/ch1.ipynb" in nb.cells[1].source
    assert '"https://github.com/other/place"' in nb.cells[2].source


def test_missing_toc_file_is_reported(book):
    root, path = book
    path.unlink()
    assert any("does not exist" in p for p in nbtool.check(root=root))


def test_cli_check_exit_codes(book):
    root, path = book
    assert nbtool.main(["--root", str(root), "check"]) == 1
    nbtool.main(["--root", str(root), "sync-colab"])
    _fake_execute(path)
    assert nbtool.main(["--root", str(root), "check"]) == 0


def test_execute_runs_in_a_real_kernel(book):
    root, path = book
    nbtool.sync_colab([path], root)
    nbtool.execute([path], timeout=120)
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[-1].outputs[0]["text"] == "2\n"
    assert nbtool.check(root=root) == []


def test_notebook_without_title_starts_with_badge(book):
    root, path = book
    nb = nbformat.read(str(path), as_version=4)
    nb.cells = nb.cells[1:]  # no title cell
    nbformat.write(nb, str(path))
    nbtool.sync_colab([path], root)
    nb = nbformat.read(str(path), as_version=4)
    assert [c.metadata.get("tags", [])[:1] for c in nb.cells[:2]] == [["colab-badge"], ["colab-setup"]]
    _fake_execute(path)
    assert nbtool.check(root=root) == []


# ---------------------------------------------------------------------------
# Unfilled {name} placeholders: what an f-string without its f leaves
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "the same in three starts ({lo}% to {hi}%)",
    "accuracy {result['val_accuracy']:.2f}%",
    "got {value!r}",
    "{cfg.seed} seeds",
])
def test_a_forgotten_f_string_is_a_placeholder(text):
    assert nbtool.placeholders(text)


@pytest.mark.parametrize("text", [
    r"maths $\frac{a}{b} + x^{2} + \mathbf{x}_{i}$ and $$\sum_{t} z_{t}$$",
    r"in words \frac{a}{b}, x_{i}, y^{t}",
    "{'commit': '381113d', 'fast_mode': False} and {1, 2} and {\"a\": 1} and {x: 1}",
    "a role {ref}`sec-x`, a substitution {{ name }}",
    "code `f\"{x}\"` and `{name}` inline\n\n```python\nprint(\"{name}\")\n```\n",
    "```{dropdown} Solution\nThe answer.\n```\n",
    '        raise ValueError(f"got {length}, not {size.min().item():g}")',
])
def test_latex_code_dicts_and_printed_f_strings_are_not(text):
    assert nbtool.placeholders(text) == []


def test_a_dropdowns_prose_is_still_read():
    assert nbtool.placeholders("```{dropdown} Solution\nfrom {lo}% to {hi}%\n```\n") == ["{lo}", "{hi}"]


def test_check_flags_a_planted_placeholder_in_markdown_and_in_outputs(book):
    root, path = book
    nbtool.sync_colab([path], root)
    _fake_execute(path, outputs=[nbformat.v4.new_output("stream", name="stdout", text="from {lo}% to 3%\n")])
    problems = nbtool.check(root=root)
    assert len(problems) == 1 and "output of code cell" in problems[0] and "{lo}" in problems[0]
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[-1].outputs = [nbformat.v4.new_output("display_data", data={"text/markdown": "| {name:.2f} |",
                                                                         "text/plain": "<Markdown>"})]
    nb.cells.append(nbformat.v4.new_markdown_cell("In three starts, {lo}% to {hi}%; $x_{i}$ is fine."))
    nbformat.write(nb, str(path))
    problems = "\n".join(nbtool.check(root=root))
    assert "{name:.2f}" in problems and "markdown cell" in problems and "'{hi}', '{lo}'" in problems
    assert "x_{i}" not in problems


# ---------------------------------------------------------------------------
# Chapter 11, the research chapter: short enough to finish, its numbers from its outputs
# ---------------------------------------------------------------------------

CHAPTER_11 = REPO_ROOT / "book" / "11_mini_scale_investigation.ipynb"
MAX_WORDS_CHAPTER_11 = 5000


def markdown_words(nb) -> int:
    return sum(len(cell.source.split()) for cell in nb.cells if cell.cell_type == "markdown")


def test_chapter_11_has_at_most_5000_words_of_markdown():
    nb = nbformat.read(str(CHAPTER_11), as_version=4)
    words = markdown_words(nb)
    assert words <= MAX_WORDS_CHAPTER_11, (
        f"chapter 11 has {words:,} words of markdown (at most {MAX_WORDS_CHAPTER_11:,}): the record of every run "
        "belongs in results/research/README.md (tools/research_index.py), not in the chapter")


def test_chapter_11s_precise_percentages_are_in_its_outputs():
    """A percentage with decimals in the chapter's prose is one its code printed from a result file."""
    import re

    nb = nbformat.read(str(CHAPTER_11), as_version=4)
    prose = " ".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    outputs = " ".join(nbtool._text_outputs(cell) + "".join(
        "".join(out.get("data", {}).get("text/markdown", "")) for out in cell.get("outputs", []))
        for cell in nb.cells if cell.cell_type == "code")
    numbers = set(re.findall(r"\b\d+\.\d+(?=%)", prose))
    missing = sorted(n for n in numbers if n not in outputs)
    assert not missing, f"chapter 11's prose types percentages its outputs do not show: {missing}"
