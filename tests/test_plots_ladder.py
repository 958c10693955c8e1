"""The ladder figure tells a run that cleared the ceiling, one still training and one that never did apart."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from dyreg_edu.plots.ladder import plot_ladder  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def marks(ax) -> list[tuple[str, float]]:
    """(marker, x) of every point drawn on the axes, legend entries aside."""
    return [(line.get_marker(), float(line.get_xdata()[0])) for line in ax.lines if len(line.get_xdata())]


def test_cleared_still_training_and_never_are_three_different_marks():
    rows = [
        {"rung": "where", "model": "dyreg", "left_ceiling": 8_000, "to_90_percent": 24_000, "videos": 72_000},
        {"rung": "sync2", "model": "dyreg", "left_ceiling": None, "to_90_percent": None, "videos": 300_000},
        {"rung": "sync2", "model": "resnet18", "left_ceiling": None, "to_90_percent": None, "videos": 72_000,
         "finished": True},
    ]
    ax = plot_ladder(rows, {"the paper's training set": 600_000})
    drawn = marks(ax)
    assert ("o", 8_000) in drawn and ("o", 24_000) in drawn  # cleared, then 90% of its last
    assert ("x", 72_000) in drawn  # finished without clearing: a cross where its run ended
    arrows = [a for a in ax.texts if getattr(a, "arrow_patch", None) is not None]
    assert len(arrows) == 1 and arrows[0].xy == (300_000 * 1.8, 1.2)  # still training: an arrow onward
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"not yet (videos so far)",
                                                                   "never, in its whole run"}
