"""Figures of class proportions, centroids and surveys (matplotlib), for ``analyze`` and ``survey``.

The figures are built on the Agg canvas directly (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``): no pyplot, no global backend switch, no window, nothing left open. Kernel
pictures are in :mod:`neural_echos.grids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from neural_echos.classifiers import CLASSES, KernelReport
from neural_echos.grids import CLASS_COLOURS, CMAP


def proportions_figure(reports: Sequence[KernelReport], title: str | None = None) -> Figure:
    """Stacked horizontal bars of class shares, each with its chance share drawn beside it.

    One row for all kernels of each report (depthwise, regular), one per kernel size where there
    are several, and one per layer of the first (depthwise) report. Each row has two bars: the
    observed shares (on / off / other) and, just below and hatched, the shares the null kernels
    get under the same classifier (chance).
    """
    rows: list[tuple[str, dict[str, float], dict[str, float]]] = []
    for report in reports:
        rows.append((f"{report.group}: all", report.proportions(), report.chance()))
        by_size = report.layers_by_size()
        if len(by_size) > 1:
            rows += [
                (f"{report.group}: all {size}", report.proportions(layers), report.chance(layers))
                for size, layers in by_size.items()
            ]
    rows += [
        (layer.name, reports[0].proportions([layer]), reports[0].chance([layer]))
        for layer in reports[0].layers
    ]

    fig = Figure(figsize=(8, 1.4 + 0.3 * len(rows)), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    for offset, height, which, hatch in ((-0.17, 0.5, 1, None), (0.25, 0.28, 2, "///")):
        left = np.zeros(len(rows))
        for name in CLASSES:
            share = np.array([row[which][name] for row in rows])
            ax.barh(
                y + offset,
                share,
                left=left,
                height=height,
                color=np.array(CLASS_COLOURS[name]) / 255,
                hatch=hatch,
                edgecolor="white" if hatch else None,
                linewidth=0,
                label=name if hatch is None else None,
            )
            left += share
    ax.barh([np.nan], [0], color="white", hatch="///", edgecolor="grey", label="chance (null kernels)")
    ax.set_yticks(y, [label for label, _, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of kernels (upper bar: observed; lower, hatched: chance)")
    ax.legend(ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or f"{reports[0].classifier}: {reports[0].n_kernels} kernels", fontsize=9, pad=18)
    return fig


def survey_figure(rows: Sequence[dict]) -> Figure:
    """On+off share per subject, group and kernel size, each beside its chance share."""
    labels = [f"{r['subject']} | {r['group']} {r['kernel_size']}" for r in rows]
    fig = Figure(figsize=(9, 1.4 + 0.32 * len(rows)), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    on = np.array([r["on_center"] for r in rows])
    off = np.array([r["off_center"] for r in rows])
    ax.barh(y - 0.17, on, height=0.5, color=np.array(CLASS_COLOURS["on_center"]) / 255, label="on_center")
    ax.barh(
        y - 0.17,
        off,
        left=on,
        height=0.5,
        color=np.array(CLASS_COLOURS["off_center"]) / 255,
        label="off_center",
    )
    chance = np.array([r["chance_on_off"] for r in rows])
    ax.barh(
        y + 0.25,
        chance,
        height=0.28,
        color="lightgrey",
        hatch="///",
        edgecolor="grey",
        linewidth=0,
        label="chance on+off (null kernels)",
    )
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(0.05, float(np.max(on + off, initial=0)), float(np.max(chance, initial=0))) * 1.1)
    ax.set_xlabel("share of kernels that are on- or off-center")
    ax.legend(ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False)
    ax.set_title("center-surround kernels, observed and by chance", fontsize=9, pad=18)
    return fig


def centroid_figure(report: KernelReport) -> Figure:
    """One panel per centroid (k-means) or class mean (templates): class, DoG score, share of its
    kernel size, and how many of its members have its class by their own taxonomy."""
    centroids = report.centroids
    ncols = min(len(centroids), 6) or 1
    nrows = int(np.ceil(len(centroids) / ncols)) or 1
    fig = Figure(figsize=(1.6 * ncols, 1.9 * nrows), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    totals: dict[tuple[int, int], int] = {}
    for c in centroids:
        totals[c.kernel_size] = totals.get(c.kernel_size, 0) + c.count
    for i, c in enumerate(centroids):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        limit = float(np.abs(c.weights).max()) or 1.0
        image = ax.imshow(c.weights / limit, cmap=CMAP, vmin=-1, vmax=1, interpolation="nearest")
        share = c.count / totals[c.kernel_size] if totals[c.kernel_size] else 0.0
        ax.set_title(
            f"{c.label}\n{c.kernel_size[0]}x{c.kernel_size[1]} score {c.score:+.2f}, {share:.0%}\n"
            + (
                f"{c.count} kernels"
                if report.centroid_name == "class means"
                else f"{c.passing}/{c.count} are {c.label}"
            ),
            fontsize=7,
            color=np.array(CLASS_COLOURS[c.label]) / 255,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    if centroids:
        fig.suptitle(
            f"{report.centroid_name} of the {report.group} kernels ({report.classifier})", fontsize=9
        )
        fig.colorbar(image, ax=fig.axes, shrink=0.8, label="weight / its max |w|")
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


__all__ = ["centroid_figure", "proportions_figure", "save_figure", "survey_figure"]
