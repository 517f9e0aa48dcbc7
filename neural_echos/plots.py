"""Pictures of kernels and class proportions, as RGB arrays (for TensorBoard) and PNG files.

Every image function returns an ``np.ndarray`` of dtype uint8 and shape ``[H, W, 3]``; log it
with ``SummaryWriter.add_image(tag, image, step, dataformats="HWC")``.

- Kernel grids are drawn straight into arrays with numpy (no figure, ~1 ms a layer): every
  kernel is scaled by its own max |w| (x / max|x| in [-1, 1]) and coloured with the diverging
  map ``RdBu_r`` centred at 0 (red positive, blue negative, white 0), enlarged by nearest
  neighbour, and framed in its class colour (:data:`CLASS_COLOURS`).
- Proportion and centroid plots are matplotlib figures built on the Agg canvas directly
  (``matplotlib.figure.Figure`` + ``FigureCanvasAgg``): no pyplot, no global backend switch, no
  window, nothing left open.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from neural_echos.classifiers import CLASSES, KernelReport, LayerResult
from neural_echos.collect import LayerKernels

CMAP = "RdBu_r"
CLASS_COLOURS = {  # RGB frame colours
    "on_center": (44, 160, 44),  # green
    "off_center": (148, 103, 189),  # purple
    "first_derivative": (255, 127, 14),  # orange
    "second_derivative": (140, 86, 75),  # brown
    "other": (170, 170, 170),  # grey
}
BACKGROUND = (255, 255, 255)
FRAME = 2  # px of class colour around a kernel
GAP = 2  # px between cells
CELL = 32  # target px per kernel side; zoom = max(1, CELL // k)
MAX_KERNELS = 64


def kernel_grid_blocks(
    blocks: Sequence[tuple[Tensor | np.ndarray, np.ndarray | None]],
    class_names: Sequence[str] = CLASSES,
    max_kernels: int = MAX_KERNELS,
    ncols: int | None = None,
    zoom: int | None = None,
) -> np.ndarray:
    """Several ``(kernels, categories)`` blocks (e.g. the layers of a stage), each from a new row.

    ``max_kernels`` is shared: each block shows its first ``max(1, max_kernels // len(blocks))``
    kernels. Kernels of different sizes are centred in cells of the largest size.
    """
    if not blocks:
        raise ValueError("no kernels to draw")
    per_block = max(1, max_kernels // len(blocks))
    arrays = [(_as_numpy(k)[:per_block], None if c is None else np.asarray(c)[:per_block]) for k, c in blocks]
    kh = max(k.shape[1] for k, _ in arrays)
    kw = max(k.shape[2] for k, _ in arrays)
    zoom = zoom or max(1, CELL // max(kh, kw))
    shown = max(len(k) for k, _ in arrays)
    ncols = ncols or (int(np.ceil(np.sqrt(shown))) if len(arrays) == 1 else min(shown, 16))
    rows = [_grid_rows(_cells(k, c, class_names, (kh, kw), zoom), ncols) for k, c in arrays if len(k)]
    if not rows:
        raise ValueError("no kernels to draw")
    spacer = np.full((2 * GAP, rows[0].shape[1], 3), BACKGROUND, np.uint8)
    pieces = []
    for block in rows:
        pieces += [block, spacer]
    return np.ascontiguousarray(np.concatenate(pieces[:-1]))


MAX_IMAGES = 24  # more layers than this: one grid per stage


def image_groups(names: list[str], max_images: int = MAX_IMAGES) -> list[tuple[str, list[int]]]:
    """One image per layer; per stage (name up to its first number) beyond ``max_images`` layers;
    consecutive chunks if there are still too many stages."""
    if len(names) <= max_images:
        return [(name, [i]) for i, name in enumerate(names)]
    stages: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        match = re.match(r"^(.*?\d+)(\.|$)", name)
        stages.setdefault(match.group(1) if match else name, []).append(i)
    if len(stages) <= max_images:
        return list(stages.items())
    size = -(-len(names) // max_images)  # ceil
    chunks = [list(range(start, min(start + size, len(names)))) for start in range(0, len(names), size)]
    return [(f"layers {chunk[0]}-{chunk[-1]}", chunk) for chunk in chunks]


def grouped_grid_images(
    layers: Sequence[LayerKernels],
    report: KernelReport,
    max_kernels: int = MAX_KERNELS,
    max_images: int = MAX_IMAGES,
) -> list[tuple[str, list[int], np.ndarray]]:
    """``(group name, layer indices, grid image)`` per layer, or per stage for deep models."""
    names = report.detailed_classes or CLASSES
    grids = []
    for group, indices in image_groups([layer.name for layer in layers], max_images):
        blocks = [(layers[j].kernels, frame_classes(report.layers[j])) for j in indices]
        grids.append((group, indices, kernel_grid_blocks(blocks, names, max_kernels=max_kernels)))
    return grids


def frame_classes(layer: LayerResult) -> np.ndarray:
    """The class index each kernel is framed with: the detailed class where there is one."""
    return layer.label if layer.detail is None else layer.detail


def centroid_image(report: KernelReport) -> np.ndarray:
    """Centroids (k-means) or class means (templates) as a framed grid, one row per kernel size."""
    blocks: dict[tuple[int, int], list] = {}
    for c in report.centroids:
        blocks.setdefault(c.kernel_size, []).append(c)
    if not blocks:
        raise ValueError("the report has no centroids")
    names = sorted({c.label for c in report.centroids}, key=list(CLASS_COLOURS).index)
    return kernel_grid_blocks(
        [
            (np.stack([c.weights for c in cs]), np.array([names.index(c.label) for c in cs]))
            for cs in blocks.values()
        ],
        names,
        max_kernels=10_000,
    )


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
            rows += [(f"{report.group}: all {size}", report.proportions(layers), report.chance(layers))
                     for size, layers in by_size.items()]
    rows += [(layer.name, reports[0].proportions([layer]), reports[0].chance([layer])) for layer in reports[0].layers]

    fig = Figure(figsize=(8, 1.4 + 0.3 * len(rows)), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    for offset, height, which, hatch in ((-0.17, 0.5, 1, None), (0.25, 0.28, 2, "///")):
        left = np.zeros(len(rows))
        for name in CLASSES:
            share = np.array([row[which][name] for row in rows])
            ax.barh(y + offset, share, left=left, height=height, color=np.array(CLASS_COLOURS[name]) / 255,
                    hatch=hatch, edgecolor="white" if hatch else None, linewidth=0,
                    label=name if hatch is None else None)
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
    ax.barh(y - 0.17, off, left=on, height=0.5, color=np.array(CLASS_COLOURS["off_center"]) / 255,
            label="off_center")
    chance = np.array([r["chance_on_off"] for r in rows])
    ax.barh(y + 0.25, chance, height=0.28, color="lightgrey", hatch="///", edgecolor="grey", linewidth=0,
            label="chance on+off (null kernels)")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(0.05, float(np.max(on + off, initial=0)), float(np.max(chance, initial=0))) * 1.1)
    ax.set_xlabel("share of kernels that are on- or off-center")
    ax.legend(ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), fontsize=8, frameon=False)
    ax.set_title("center-surround kernels, observed and by chance", fontsize=9, pad=18)
    return fig


def centroid_figure(report: KernelReport) -> Figure:
    """One panel per centroid (k-means) or class mean (templates): class, score, share."""
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
        ax.imshow(c.weights, cmap=CMAP, vmin=-limit, vmax=limit, interpolation="nearest")
        share = c.count / totals[c.kernel_size] if totals[c.kernel_size] else 0.0
        ax.set_title(
            f"{c.label}\n{c.kernel_size[0]}x{c.kernel_size[1]} score {c.score:+.2f}, {share:.0%}",
            fontsize=7,
            color=np.array(CLASS_COLOURS[c.label]) / 255,
        )
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def save_png(image: np.ndarray, path: str | Path, title: str | None = None) -> Path:
    """Write an ``[H, W, 3]`` uint8 image as PNG, with an optional one-line title strip on top."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(image)
    if title:
        font = ImageFont.load_default()
        left, top, right, bottom = ImageDraw.Draw(picture).textbbox((0, 0), title, font=font)
        strip = bottom + 6
        canvas = Image.new("RGB", (max(picture.width, right + 8), picture.height + strip), BACKGROUND)
        canvas.paste(picture, (0, strip))
        ImageDraw.Draw(canvas).text((4, 3), title, fill=(0, 0, 0), font=font)
        picture = canvas
    picture.save(path, optimize=False, compress_level=1)
    return path


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def frame_legend(class_names: Sequence[str]) -> str:
    """``"frames: on_center green, ..."`` for titles."""
    colour_words = {
        "on_center": "green",
        "off_center": "purple",
        "first_derivative": "orange",
        "second_derivative": "brown",
        "other": "grey",
    }
    return "frames: " + ", ".join(f"{name} {colour_words[name]}" for name in class_names)


def _as_numpy(kernels: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(kernels, Tensor):
        kernels = kernels.detach().to("cpu", torch.float32).numpy()
    return np.asarray(kernels, dtype=np.float32)


def _cells(
    kernels: np.ndarray,
    categories: np.ndarray | None,
    class_names: Sequence[str],
    cell_size: tuple[int, int],
    zoom: int,
) -> np.ndarray:
    """``[n, ch, cw, 3]`` uint8: each kernel coloured, enlarged, centred in its cell and framed."""
    n, kh, kw = kernels.shape
    limit = np.abs(kernels).reshape(n, -1).max(axis=1)
    scaled = kernels / np.where(limit > 0, limit, 1.0)[:, None, None]  # x / max|x| in [-1, 1]
    rgb = matplotlib.colormaps[CMAP]((scaled + 1) / 2, bytes=True)[..., :3]  # 0 -> centre of the map
    rgb = rgb.repeat(zoom, axis=1).repeat(zoom, axis=2)

    ch, cw = cell_size[0] * zoom + 2 * FRAME, cell_size[1] * zoom + 2 * FRAME
    cells = np.empty((n, ch, cw, 3), np.uint8)
    if categories is None:
        cells[:] = BACKGROUND
    else:
        palette = np.array([CLASS_COLOURS[name] for name in class_names], np.uint8)
        cells[:] = palette[np.asarray(categories)][:, None, None, :]
    top = (ch - kh * zoom) // 2
    left = (cw - kw * zoom) // 2
    if (kh, kw) != cell_size:  # smaller kernel: background inside the frame
        cells[:, FRAME : ch - FRAME, FRAME : cw - FRAME] = BACKGROUND
    cells[:, top : top + kh * zoom, left : left + kw * zoom] = rgb
    return cells


def _grid_rows(cells: np.ndarray, ncols: int) -> np.ndarray:
    """Tile ``[n, ch, cw, 3]`` cells into rows of ``ncols`` with GAP px between them."""
    n, ch, cw, _ = cells.shape
    nrows = int(np.ceil(n / ncols))
    padded = np.full((nrows * ncols, ch + GAP, cw + GAP, 3), BACKGROUND, np.uint8)
    padded[:n, :ch, :cw] = cells
    grid = padded.reshape(nrows, ncols, ch + GAP, cw + GAP, 3).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(nrows * (ch + GAP), ncols * (cw + GAP), 3)
    return grid[:-GAP, :-GAP]


__all__ = [
    "CLASS_COLOURS",
    "CMAP",
    "MAX_KERNELS",
    "centroid_figure",
    "centroid_image",
    "frame_legend",
    "grouped_grid_images",
    "image_groups",
    "kernel_grid_blocks",
    "frame_classes",
    "proportions_figure",
    "survey_figure",
    "save_figure",
    "save_png",
]
