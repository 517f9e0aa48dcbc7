"""Pictures of kernel tracking (:mod:`neural_echos.tracking`): the transition table and the
per-layer drift and population signal, as ``[H, W, 3]`` uint8 arrays (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from neural_echos.grids import SHORT_NAMES
from neural_echos.tracking import Drift, PopulationSignal, row_shares, transition_summary

DPI = 100


def figure_array(fig: Figure) -> np.ndarray:
    """A drawn matplotlib figure as ``[H, W, 3]`` uint8 (the figure is closed)."""
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def _table(ax, matrix: np.ndarray, class_names: Sequence[str], title: str) -> None:
    shares = row_shares(matrix)
    ax.imshow(shares, cmap="Greens", vmin=0, vmax=1)
    short = [SHORT_NAMES.get(name, name) for name in class_names]
    rows, cols = matrix.sum(axis=1), matrix.sum(axis=0)
    ax.set_xticks(range(len(short)), [f"{s}\n{c}" for s, c in zip(short, cols, strict=True)], fontsize=7)
    ax.set_yticks(range(len(short)), [f"{s} {r}" for s, r in zip(short, rows, strict=True)], fontsize=7)
    ax.set_xlabel("class now (kernels)", fontsize=8)
    ax.set_ylabel("class then (kernels)", fontsize=8)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                colour = "white" if shares[i, j] > 0.6 else "black"
                ax.text(
                    j,
                    i,
                    f"{matrix[i, j]}\n{shares[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color=colour,
                )
    summary = transition_summary(matrix)
    ax.set_title(
        f"{title}\nretained {summary.retained:.1%} (chance {summary.retained_chance:.1%}); "
        f"gained on/off {summary.gained:.1%} ({summary.gained_chance:.1%}); "
        f"lost {summary.lost:.1%} ({summary.lost_chance:.1%})",
        fontsize=7,
    )


def transition_image(
    tables: Sequence[tuple[str, np.ndarray]], class_names: Sequence[str], heading: str = ""
) -> np.ndarray:
    """Transition tables side by side (``(title, counts)`` each: rows the earlier class, columns
    the later one; each cell its count and its share of the row), retained/gained/lost with
    their chance shares in each title."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.6 * len(tables), 4.9), dpi=DPI, squeeze=False)
    for ax, (title, matrix) in zip(axes[0], tables, strict=True):
        _table(ax, matrix, class_names, title)
    if heading:
        fig.suptitle(heading, fontsize=8)
    fig.tight_layout()
    return figure_array(fig)


def layer_drift_image(
    names: Sequence[str],
    drifts: Sequence[Drift],
    signals: Sequence[dict[str, PopulationSignal]],
    heading: str = "",
) -> np.ndarray:
    """Per layer, in network order: median cosine distance to init, relative norm change, and the
    population signal (DoG energy and mean DoG score, observed against the permuted null's mean)."""
    y = np.arange(len(names))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(11, 0.28 * len(names) + 1.6), dpi=DPI, sharey=True)
    axes[0].barh(y, [d.cosine_distance for d in drifts], color="tab:blue")
    axes[0].set_title("drift: median cosine distance to init", fontsize=8)
    axes[1].barh(y, [d.norm_change for d in drifts], color="tab:orange")
    axes[1].axvline(0, color="black", lw=0.5)
    axes[1].set_title("relative norm change ||W||/||W0|| - 1", fontsize=8)
    energy = [s["dog_energy"] for s in signals]
    axes[2].barh(y + 0.2, [s.observed for s in energy], height=0.4, color="tab:green", label="DoG energy")
    axes[2].barh(
        y + 0.2,
        [s.null_mean for s in energy],
        height=0.4,
        color="none",
        edgecolor="black",
        ls="--",
        label="its permuted null",
    )
    score = [s["mean_score"] for s in signals]
    axes[2].barh(y - 0.2, [s.observed for s in score], height=0.4, color="tab:purple", label="mean DoG score")
    axes[2].barh(
        y - 0.2,
        [s.null_mean for s in score],
        height=0.4,
        color="none",
        edgecolor="grey",
        ls=":",
        label="its permuted null",
    )
    axes[2].axvline(0, color="black", lw=0.5)
    axes[2].set_title("population signal (dashed: permuted null)", fontsize=8)
    axes[2].legend(fontsize=6, loc="lower right")
    axes[0].set_yticks(y, list(names), fontsize=7)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7)
    if heading:
        fig.suptitle(heading, fontsize=8)
    fig.tight_layout()
    return figure_array(fig)


__all__ = ["figure_array", "layer_drift_image", "transition_image"]
