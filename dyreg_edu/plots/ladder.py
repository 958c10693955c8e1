"""The ladder of tasks as figures: how many videos each rung took, and the curves of one rung."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt

#: One colour per model, the same in every figure of the ladder.
MODEL_COLORS = {"dyreg": "tab:blue", "fixed": "tab:orange", "resnet18": "tab:grey"}
MODEL_NAMES = {"dyreg": "DyReg-GNN", "fixed": "Fixed", "resnet18": "plain ResNet"}


def plot_ladder(rows: Sequence[Mapping], budgets: Mapping[str, float], ax=None):
    """Per rung (bottom: the easiest) and model, the training videos its validation accuracy took to clear the
    blind ceiling (a filled circle) and to reach 90% of its last value (a ring); a run still training that has
    not cleared the ceiling is an arrow at the videos it has seen, a finished one that never did a cross at the
    end of its run. ``rows``: ``{"rung", "model", "left_ceiling", "to_90_percent", "videos"}`` (videos, ``None``
    for not yet) and optionally ``"finished"`` (default False); ``budgets``: labelled vertical lines (e.g. the
    paper's training set)."""
    ax = ax or plt.subplots(figsize=(8, 3.2))[1]
    rungs = list(dict.fromkeys(r["rung"] for r in rows))
    offsets = {"dyreg": 0.2, "fixed": 0.0, "resnet18": -0.2}
    for r in rows:
        y, color = rungs.index(r["rung"]) + offsets.get(r["model"], 0), MODEL_COLORS.get(r["model"], "black")
        if r["left_ceiling"] is not None:
            ax.plot(r["left_ceiling"], y, "o", color=color)
        elif r.get("finished", False):
            ax.plot(r["videos"], y, "x", color=color)
        else:
            ax.annotate("", xy=(r["videos"] * 1.8, y), xytext=(r["videos"], y),
                        arrowprops=dict(arrowstyle="->", color=color))
        if r["to_90_percent"] is not None:
            ax.plot(r["to_90_percent"], y, "o", mfc="none", color=color)
    for label, videos in budgets.items():
        ax.axvline(videos, color="black", lw=0.8, ls=":")
        ax.text(videos / 1.08, len(rungs) - 0.45, label, fontsize=7, va="top", ha="right")
    ax.set_xscale("log")
    ax.set_yticks(range(len(rungs)), rungs)
    ax.set_ylim(-0.6, len(rungs) - 0.4)
    ax.set_xlabel("training videos")
    handles = [plt.Line2D([], [], color=c, marker="o", ls="", label=MODEL_NAMES[m]) for m, c in MODEL_COLORS.items()]
    handles += [plt.Line2D([], [], color="black", marker="o", ls="", label="cleared the blind ceiling"),
                plt.Line2D([], [], color="black", marker="o", mfc="none", ls="", label="90% of its last accuracy"),
                plt.Line2D([], [], color="black", marker=r"$\rightarrow$", ls="", label="not yet (videos so far)"),
                plt.Line2D([], [], color="black", marker="x", ls="", label="never, in its whole run")]
    ax.legend(handles=handles, fontsize=7, loc="lower right", ncol=2)
    ax.figure.tight_layout()
    return ax


def plot_curves(logs: Mapping[str, Sequence[Mapping]], *, batch_size: int, ceiling: float | None = None,
                key: str = "val_accuracy", axes=None, ylabel: str = "validation accuracy (%)"):
    """The validation curves of a rung's models (``logs``: model -> its log records) against training videos,
    on moving and (dashed) still videos, with the blind ceiling."""
    ax = axes or plt.subplots(figsize=(6, 3))[1]
    for model, log in logs.items():
        rows = [r for r in log if key in r]
        videos = [r["step"] * batch_size for r in rows]
        ax.plot(videos, [r[key] for r in rows], color=MODEL_COLORS[model], label=MODEL_NAMES[model])
        if key == "val_accuracy" and any("still_val_accuracy" in r for r in rows):
            ax.plot(videos, [r.get("still_val_accuracy") for r in rows], color=MODEL_COLORS[model], ls="--", lw=0.8)
    if ceiling is not None:
        ax.axhline(ceiling, color="black", lw=0.8, ls=":")
    ax.set(xlabel="training videos", ylabel=ylabel)
    ax.legend(fontsize=7)
    return ax
