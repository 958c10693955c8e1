"""The book as a course: implementation exercises, their checks, the student edition."""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools import notebooks  # noqa: E402

from dyreg_edu.exercises import check, random_inputs  # noqa: E402
from dyreg_edu.kernels import tent  # noqa: E402

CHAPTERS = notebooks.toc_notebooks(ROOT)


def _read(path):
    return nbformat.read(str(path), as_version=4)


def test_enough_implementation_exercises_across_chapters():
    per_chapter = {path.name: len(notebooks.exercises(_read(path))) for path in CHAPTERS}
    assert sum(per_chapter.values()) >= 8, per_chapter
    assert sum(1 for n in per_chapter.values() if n) >= 5, per_chapter


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_every_solution_passes_its_check(path):
    nb = _read(path)
    for stub, solution, checker in notebooks.exercises(nb):
        assert solution is not None and checker is not None, f"cell {stub}: stub without solution or check"
        assert "NBVAL_CHECK_OUTPUT" in nb.cells[checker].source, f"cell {checker}: nbval must compare the verdict"
        assert notebooks.CHECK_PASSED in notebooks._text_outputs(nb.cells[checker]), f"cell {checker} did not pass"
    assert not notebooks.exercise_problems(nb, path.name)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_student_edition_has_no_solution_left(path, tmp_path):
    (written,) = notebooks.student([path], ROOT, tmp_path)
    assert written == tmp_path / path.name
    nb = _read(written)
    assert not any(notebooks.SOLUTION_TAG in c.metadata.get("tags", []) for c in nb.cells)
    assert not any("{dropdown} Solution" in c.source for c in nb.cells if c.cell_type == "markdown")
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code")
    # every implementation exercise is still there, as a stub
    stubs = [c for c in nb.cells if c.cell_type == "code" and notebooks.STUB_MARK in c.source]
    assert len(stubs) == len(notebooks.exercises(_read(path)))


def test_student_notebook_drops_solution_cells_and_dropdowns():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("**Exercise.** Why?\n\n```{dropdown} Solution\nBecause.\n```\n\nAfter."),
        nbformat.v4.new_code_cell("def f(x):\n    raise NotImplementedError"),
        nbformat.v4.new_code_cell("def f(x):\n    return x", metadata={"tags": ["solution", "hide-cell"]}),
        nbformat.v4.new_code_cell("check(f, g, inputs)"),
    ])
    student = notebooks.student_notebook(nb)
    assert [c.source for c in student.cells][1:] == ["def f(x):\n    raise NotImplementedError", "check(f, g, inputs)"]
    assert "Because" not in student.cells[0].source and "After." in student.cells[0].source
    assert notebooks.exercises(nb) == [(1, 2, 3)]


def test_exercise_problems_are_named():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("def f(x):\n    raise NotImplementedError"),
        nbformat.v4.new_code_cell("def f(x):\n    return x", metadata={"tags": ["solution"]}),
    ])
    problems = notebooks.exercise_problems(nb, "ch.ipynb")
    assert any("hide-cell" in p for p in problems) and any("no check cell" in p for p in problems)


def _inputs():
    return random_inputs(lambda g: (float(torch.rand((), generator=g) * 15), 2.5, 16), trials=3)


def test_check_passes_a_right_answer(capsys):
    assert check(lambda c, s, n: tent(c, s, n), tent, _inputs(), name="my_tent")
    assert capsys.readouterr().out.startswith("Passed: `my_tent`")


@pytest.mark.parametrize("student, message", [
    (lambda c, s, n: (_ for _ in ()).throw(NotImplementedError), "is not written yet"),
    (lambda c, s, n: tent(c, s, n)[:-1], "shape [15], expected [16]"),
    (lambda c, s, n: tent(c, s, n) * 1.1, "values differ"),
    (lambda c, s, n: 1 / 0, "raised ZeroDivisionError"),
])
def test_check_says_what_is_wrong_and_never_raises(student, message, capsys):
    assert not check(student, tent, _inputs(), name="my_tent")
    assert message in capsys.readouterr().out


def test_check_compares_gradients(capsys):
    inputs = random_inputs(lambda g: (torch.randn(5, generator=g),), trials=2)
    assert check(lambda x: x.tanh(), torch.tanh, inputs, grad=True)
    wrong_grad = lambda x: x.detach().tanh() + 0 * x  # noqa: E731  (right values, no gradient)
    assert not check(wrong_grad, torch.tanh, inputs, grad=True)
    assert "gradient" in capsys.readouterr().out
