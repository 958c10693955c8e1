"""The ablation figures draw what they are given, each run in its one colour (dyreg_edu.plots.ablations)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from dyreg_edu.plots import ablations as pa  # noqa: E402
from dyreg_edu.plots.ladder import MODEL_COLORS  # noqa: E402

ROWS = [
    {"name": "resnet18", "model": "ResNet-18 (no graph)", "paper": 52.29, "ours": 34.9},
    {"name": "resnet18_continued", "model": "ResNet-18 trained on as long as the graph variants (control)",
     "paper": None, "ours": 36.6},
    {"name": "fixed", "model": "Fixed", "paper": 78.85, "ours": 36.5},
    {"name": "dyreg", "model": "DyReg-GNN", "paper": 95.09, "ours": None},
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_every_run_has_its_own_colour_and_the_ladder_keeps_its_colours():
    colours = [to_rgba(c) for c in pa.RUN_COLORS.values()]
    assert len(set(colours)) == len(colours)
    assert to_rgba(pa.PAPER_COLOR) not in colours
    for model, colour in MODEL_COLORS.items():
        assert pa.run_color(model) == colour
    assert pa.run_color("no_such_run") == "black"


def test_runs_outside_the_paper_say_so_in_their_label():
    for name in pa.OUTSIDE_THE_PAPER:
        assert "not the paper" in pa.run_label(name)
    assert pa.run_label("no_such_run") == "no_such_run"


def test_paper_and_ours_bars_panel_by_panel():
    ax_paper, ax_ours = pa.plot_paper_and_ours(ROWS, ceiling=54.0, ceiling_label="ceiling")
    paper_bars = {round(p.get_width(), 2): p for p in ax_paper.patches}
    ours_bars = {round(p.get_width(), 2): p for p in ax_ours.patches}
    assert set(paper_bars) == {52.29, 78.85, 95.09}      # a missing number draws no bar
    assert set(ours_bars) == {34.9, 36.6, 36.5}
    assert all(p.get_hatch() for p in paper_bars.values())          # the paper's: hatched grey
    assert all(to_rgba(p.get_facecolor()) == to_rgba(pa.PAPER_COLOR) for p in paper_bars.values())
    assert to_rgba(ours_bars[36.5].get_facecolor()) == to_rgba(pa.run_color("fixed"))  # ours: the run's colour
    texts = [t.get_text() for t in ax_paper.texts] + [t.get_text() for t in ax_ours.texts]
    assert "not in the paper" in texts and "not run yet" in texts


def test_the_ceiling_is_drawn_across_our_panel_only():
    ax_paper, ax_ours = pa.plot_paper_and_ours(ROWS, ceiling=54.0, ceiling_label="ceiling")
    assert [line.get_xdata()[0] for line in ax_ours.lines] == [54.0]
    assert ax_paper.lines == [] or all(line.get_xdata()[0] != 54.0 for line in ax_paper.lines)
    ax_paper, ax_ours = pa.plot_paper_and_ours(ROWS)
    assert list(ax_ours.lines) == []


def test_row_labels_are_wrapped_and_do_not_overlap():
    ax_paper, _ = pa.plot_paper_and_ours(ROWS, wrap=30)
    fig = ax_paper.figure
    fig.canvas.draw()
    labels = [t for t in ax_paper.get_yticklabels() if t.get_text()]
    assert len(labels) == len(ROWS)
    assert all(max(len(line) for line in t.get_text().split("\n")) <= 30 for t in labels)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_gates_one_colour_per_run_in_both_panels():
    log = [{"step": s, "gamma": {"residual": 0.01 * s, "regions": 0.02 * s}} for s in (1, 2, 3)]
    fixed = [{"step": s, "gamma": {"residual": 0.01}} for s in (1, 2, 3)]
    ax_res, ax_gamma = pa.plot_gates({"fixed": fixed, "dyreg": log, "dyreg_residual_scale1": log,
                                      "no_log": [{"step": 1}]})
    left = {line.get_label(): line for line in ax_res.lines}
    right = {line.get_label(): line for line in ax_gamma.lines}
    assert set(left) == {pa.run_label(n) for n in ("fixed", "dyreg", "dyreg_residual_scale1")}
    assert set(right) == {pa.run_label(n) for n in ("dyreg", "dyreg_residual_scale1")}  # Fixed has no regions
    for label, line in right.items():
        assert to_rgba(line.get_color()) == to_rgba(left[label].get_color())
    assert left[pa.run_label("dyreg_residual_scale1")].get_linestyle() == ":"
    assert left[pa.run_label("dyreg")].get_linestyle() == "-"
