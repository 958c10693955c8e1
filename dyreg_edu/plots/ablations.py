"""Figures of the ablation tables (paper Tables 5-11): the paper's accuracies beside ours, and the
gates that open the graph branch during training.

One colour per run (:data:`RUN_COLORS`), the same in every figure of the chapter and, for the
runs they share, the same as the ladder's (:data:`dyreg_edu.plots.ladder.MODEL_COLORS`). Runs that
are not the paper's model (a switch outside the paper, box supervision) are named so in
:data:`RUN_LABELS` wherever a figure shows them. Nothing here reads files or trains anything.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt

from .ladder import MODEL_COLORS

__all__ = ["RUN_COLORS", "RUN_LABELS", "PAPER_COLOR", "run_color", "run_label", "OUTSIDE_THE_PAPER",
           "plot_paper_and_ours", "plot_gates"]

#: One colour per run, defined once: the ladder's three models keep the ladder's colours.
RUN_COLORS: dict[str, str] = {
    **MODEL_COLORS,                       # dyreg blue, fixed orange, resnet18 grey
    "resnet18_continued": "dimgray",
    "resnet18_tsm": "tab:olive",
    "static": "tab:green",
    "constant_time": "tab:red",
    "pos_only": "tab:purple",
    "no_gru": "tab:pink",
    "oracle": "tab:brown",
    "semantic": "tab:cyan",
    "lite": "navy",
    "dyreg_residual_scale1": "black",     # a research switch, not the paper's model
}
#: How a figure names a run: the paper's names, and what a run outside the paper changes.
RUN_LABELS: dict[str, str] = {
    "resnet18": "plain ResNet-18", "resnet18_continued": "plain, trained as long (control)",
    "resnet18_tsm": "plain + temporal shift (control)", "fixed": "Fixed", "static": "Static",
    "constant_time": "Constant-Time", "pos_only": "Position-Only", "dyreg": "DyReg-GNN",
    "no_gru": "DyReg-GNN without GRU", "oracle": "Oracle (ground-truth boxes as regions)",
    "semantic": "Semantic", "lite": "DyReg-GNN-Lite",
    "dyreg_residual_scale1": "DyReg, residual scale from 1.0 (research switch, not the paper's)",
}
#: Runs that are not the paper's model (a switch outside the paper): drawn dotted.
OUTSIDE_THE_PAPER = frozenset({"dyreg_residual_scale1"})
#: The paper's bars: light grey with a hatch, never a run's colour.
PAPER_COLOR = "#d0d0d0"


def run_color(name: str) -> str:
    """The colour of run ``name`` (black for a run without one)."""
    return RUN_COLORS.get(name, "black")


def run_label(name: str) -> str:
    """How figures name run ``name`` (the name itself for a run without a label)."""
    return RUN_LABELS.get(name, name)


def plot_paper_and_ours(rows: Sequence[Mapping], *, ceiling: float | None = None, ceiling_label: str = "",
                        paper_label: str = "paper", ours_label: str = "ours", axes=None, wrap: int = 34):
    """A table's accuracies as horizontal bars: the paper's in the left panel (hatched grey), ours in the
    right one (each run in its colour), one row per run, labels read once on the left.

    Args:
        rows: a table's rows (``table<k>.json``): ``{"name", "model", "paper", "ours"}``, accuracies in percent
            or ``None`` (no bar: "not in the paper" / "not run yet").
        ceiling: the motion-blind ceiling of *our* data, drawn across our panel only (the paper's data has its
            own); ``None`` for none.
        ceiling_label: its label.
        paper_label, ours_label: the two panels' titles.
        axes: two axes sharing their y axis; default a new figure.
        wrap: the row labels' width in characters.

    Returns:
        the two axes ``(paper, ours)``.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 0.42 * len(rows) + 1.3), sharey=True)
    ax_paper, ax_ours = axes
    y = range(len(rows))
    for ax, key in ((ax_paper, "paper"), (ax_ours, "ours")):
        for k, row in zip(y, rows):
            value = row[key]
            if value is None:
                ax.text(1, k, "not in the paper" if key == "paper" else "not run yet", va="center", fontsize=7,
                        color="gray", style="italic")
                continue
            style = (dict(color=PAPER_COLOR, hatch="///", edgecolor="gray") if key == "paper"
                     else dict(color=run_color(row["name"])))
            ax.barh(k, value, height=0.7, **style)
            ax.text(value + 1, k, f"{value:.1f}", va="center", fontsize=7)
        ax.set_xlim(0, 100)
        ax.set_xlabel("validation accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", lw=0.3, alpha=0.5)
    ax_paper.set_yticks(list(y), [textwrap.fill(r["model"], wrap) for r in rows], fontsize=7.5)
    ax_paper.invert_yaxis()
    ax_paper.set_title(paper_label, fontsize=8)
    ax_ours.set_title(ours_label, fontsize=8)
    if ceiling is not None:
        ax_ours.axvline(ceiling, ls="--", color="black", lw=1)
        ax_ours.text(ceiling + 1, len(rows) - 0.45, ceiling_label, fontsize=7, va="bottom", ha="left")
    ax_ours.figure.tight_layout()
    return ax_paper, ax_ours


def plot_gates(traces: Mapping[str, Sequence[Mapping]], axes=None):
    """The two gates of the graph branch over training, one line per run in its colour: the residual
    LayerNorm's mean ``|scale|`` (left, log scale) and the region generator's mean ``|gamma|`` (right; runs
    without a region generator have no line there); a run of :data:`OUTSIDE_THE_PAPER` is dotted, and one
    legend below names every run. ``traces``: run name -> its log records (those with a
    ``"gamma"`` entry are drawn).

    Returns:
        the two axes.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    ax_res, ax_gamma = axes
    for name, log in traces.items():
        rows = [r for r in log if "gamma" in r]
        if not rows:
            continue
        steps = [r["step"] for r in rows]
        style = dict(color=run_color(name), label=run_label(name), lw=1.2,
                     ls=":" if name in OUTSIDE_THE_PAPER else "-")
        ax_res.plot(steps, [r["gamma"]["residual"] for r in rows], **style)
        if "regions" in rows[0]["gamma"]:
            ax_gamma.plot(steps, [r["gamma"]["regions"] for r in rows], **style)
    ax_res.set(xlabel="step", ylabel="mean |residual LayerNorm scale|", yscale="log")
    ax_res.set_title("how open the graph branch is", fontsize=9)
    ax_gamma.set(xlabel="step", ylabel=r"mean $|\gamma|$ of the regions (Eq. 11)")
    ax_gamma.set_title("how far regions may move from the anchors", fontsize=9)
    handles, labels = ax_res.get_legend_handles_labels()
    ax_res.figure.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(labels)),
                         bbox_to_anchor=(0.5, 0.0))
    ax_res.figure.tight_layout(rect=(0, 0.06 * (1 + (len(labels) - 1) // 4), 1, 1))
    return ax_res, ax_gamma
