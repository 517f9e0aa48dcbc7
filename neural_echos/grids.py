"""Kernel pictures that explain themselves, drawn straight into RGB arrays (numpy and PIL, no figure).

Every function returns an ``np.ndarray`` of dtype uint8 and shape ``[H, W, 3]``; log it with
``SummaryWriter.add_image(tag, image, step, dataformats="HWC")`` or save it with
:func:`save_png`. Each picture carries its own key: a title line saying what is shown (which
kernels of how many, how they were picked, how colours are scaled) and a legend strip with the
colour scale and its values and what each frame colour means.

Colours: the diverging map ``RdBu_r`` centred at 0 (red positive, blue negative, white 0). The
scale (``scaling``) is ``"kernel"`` (each kernel divided by its own max |w|, so every kernel uses
the full range and shapes compare) or ``"layer"`` (one scale, the largest |w| of the picture, so
magnitudes compare). The transfer (``transfer``) is ``"linear"`` or ``"signed_sqrt"``
(sign(x) sqrt(|x|)): a DoG's surround is a few per cent of its centre on a linear scale and
almost invisible; the square root lifts it to ~15 %.

Which kernels (``sampling``): ``"spread"`` takes evenly spaced channels across the layer, so a
picture of 64 of 320 kernels sees the whole layer, not its first channels; ``"per_class"`` takes
evenly spaced kernels of each class in turn, so rare classes show.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from neural_echos.classifiers import CLASSES, KernelReport, LayerResult
from neural_echos.collect import LayerKernels

CMAP = "RdBu_r"
CLASS_COLOURS = {  # RGB frame colours, one per detailed class of neural_echos.taxonomy
    "on_center": (44, 160, 44),  # green
    "off_center": (148, 103, 189),  # purple
    "blob": (31, 119, 180),  # blue
    "delta": (23, 190, 207),  # cyan
    "shifted_delta": (188, 189, 34),  # olive
    "first_derivative": (255, 127, 14),  # orange
    "second_derivative": (140, 86, 75),  # brown
    "other": (170, 170, 170),  # grey
}
SHORT_NAMES = {
    "on_center": "on",
    "off_center": "off",
    "blob": "blob",
    "delta": "delta",
    "shifted_delta": "shift",
    "first_derivative": "d1",
    "second_derivative": "d2",
    "other": "other",
}
COLOUR_WORDS = {
    "on_center": "green",
    "off_center": "purple",
    "blob": "blue",
    "delta": "cyan",
    "shifted_delta": "olive",
    "first_derivative": "orange",
    "second_derivative": "brown",
    "other": "grey",
}
SCALINGS = ("kernel", "layer")
TRANSFERS = ("linear", "signed_sqrt")
SAMPLINGS = ("spread", "per_class")
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
FRAME = 2  # px of class colour around a kernel
GAP = 3  # px between cells
MARGIN = 6  # px left and right of the kernels
CELL = 36  # target px per kernel side; zoom = max(1, CELL // k)
# TensorBoard's image cards are about 350 px wide and shrink wider images to fit: pictures are
# laid out for this width, so that their 12 px text stays readable at the default card size
WIDTH = 340
FONT_SIZE = 12
MAX_KERNELS = 64
MAX_IMAGES = 24  # more layers than this: one grid per stage


@dataclass
class Block:
    """A row group of a grid: kernels ``[n, kh, kw]``, each kernel's class index, optional captions."""

    kernels: np.ndarray
    classes: np.ndarray
    captions: Sequence[str] | None = None


# --------------------------------------------------------------------------------------------
# choosing kernels


def select_kernels(classes: np.ndarray, count: int, sampling: str = "spread") -> np.ndarray:
    """Indices of at most ``count`` kernels of a layer, in channel order (see the module docstring)."""
    n = len(classes)
    if n <= count:
        return np.arange(n)
    if sampling == "spread":
        return np.unique(np.linspace(0, n - 1, count).round().astype(np.int64))
    picked: list[int] = []
    pools = [np.flatnonzero(classes == c) for c in np.unique(classes)]
    share = -(-count // len(pools))  # ceil
    for pool in pools:  # evenly spaced within each class
        take = min(len(pool), share)
        picked += pool[np.unique(np.linspace(0, len(pool) - 1, take).round().astype(np.int64))].tolist()
    if len(picked) < count:  # small classes left room: fill it evenly from the rest
        rest = np.setdiff1d(np.arange(n), picked)
        picked += rest[
            np.unique(np.linspace(0, len(rest) - 1, count - len(picked)).round().astype(np.int64))
        ].tolist()
    return np.sort(np.array(picked[:count] if len(picked) > count else picked, dtype=np.int64))


def selection_words(sampling: str, shown: int, total: int) -> str:
    if shown >= total:
        return f"all {total} kernels"
    how = "evenly spaced channels" if sampling == "spread" else "evenly spaced within each class"
    return f"{shown} of {total} kernels ({how})"


# --------------------------------------------------------------------------------------------
# the pictures


def kernel_grid(
    blocks: Sequence[Block],
    class_names: Sequence[str] = CLASSES,
    title: str = "",
    scaling: str = "kernel",
    transfer: str = "linear",
    ncols: int | None = None,
) -> np.ndarray:
    """One picture: every block from a new row, a title line and a legend strip.

    Kernels of different sizes are centred in cells of the largest size.
    """
    _check_choices(scaling, transfer)
    blocks = [block for block in blocks if len(block.kernels)]
    if not blocks:
        raise ValueError("no kernels to draw")
    kh = max(block.kernels.shape[1] for block in blocks)
    kw = max(block.kernels.shape[2] for block in blocks)
    zoom = max(1, CELL // max(kh, kw))
    limit = max(float(np.abs(block.kernels).max()) for block in blocks) if scaling == "layer" else None
    rows = []
    for block in blocks:
        cells = _captioned(_cells(block, class_names, (kh, kw), zoom, limit, transfer), block.captions)
        fits = max(1, (WIDTH - 2 * MARGIN + GAP) // (cells.shape[2] + GAP))  # columns within the card width
        columns = ncols or (int(np.ceil(np.sqrt(len(cells)))) if len(blocks) == 1 else len(cells))
        rows.append(_grid_rows(cells, min(columns, fits)))
    width = max(WIDTH, *(row.shape[1] + 2 * MARGIN for row in rows))
    pieces = []
    for row in rows:
        pieces += [_pad_width(row, width), _blank((2 * GAP, width, 3))]
    body = np.concatenate(pieces[:-1])
    legend = legend_strip(class_names, width, limit, transfer)
    return np.ascontiguousarray(np.concatenate([_text_strip(title, width), body, legend]))


def legend_strip(
    class_names: Sequence[str], width: int, limit: float | None = None, transfer: str = "linear"
) -> np.ndarray:
    """The colour scale with its values, what it means, and the frame colours with their classes."""
    return _legend_strip(tuple(class_names), width, limit, transfer)


@functools.lru_cache(maxsize=64)  # the same legend closes every picture of a snapshot: draw it once
def _legend_strip(class_names: tuple[str, ...], width: int, limit: float | None, transfer: str) -> np.ndarray:
    font = _font()
    line = FONT_SIZE + 4
    bar_width, bar_height, left = min(200, width - 2 * MARGIN - 20), 10, MARGIN + 4
    # swatches wrapped over as many lines as the width needs
    swatch_lines: list[list[str]] = [[]]
    x = left + _text_width("frames: ", font)
    for name in class_names:
        item = 14 + _text_width(name, font) + 10
        if swatch_lines[-1] and x + item > width - MARGIN:
            swatch_lines.append([])
            x = left + _text_width("frames: ", font)
        swatch_lines[-1].append(name)
        x += item
    height = 4 + bar_height + 4 + line + line + line * len(swatch_lines) + 4
    picture = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    # colour bar: position u in [-1, 1] shows the colour of displayed value u
    u = np.linspace(-1, 1, bar_width)
    rgb = matplotlib.colormaps[CMAP]((u + 1) / 2, bytes=True)[:, :3]
    picture.paste(Image.fromarray(np.ascontiguousarray(np.repeat(rgb[None], bar_height, axis=0))), (left, 4))
    y = 4 + bar_height
    for tick in (-1.0, -0.5, 0.0, 0.5, 1.0):
        x = left + round((tick + 1) / 2 * (bar_width - 1))
        draw.line([(x, y), (x, y + 3)], fill=INK)
        value = np.sign(tick) * (
            tick * tick if transfer == "signed_sqrt" else abs(tick)
        )  # displayed u -> value
        label = f"{value * limit:+.2g}" if limit is not None else f"{value:+.2g}"
        label = "0" if value == 0 else label
        text_width = _text_width(label, font)
        draw.text((min(max(0, x - text_width / 2), width - text_width), y + 3), label, fill=INK, font=font)
    y += 4 + line
    scale = "weight" if limit is not None else "weight / the kernel's max |w|"
    curve = "signed sqrt" if transfer == "signed_sqrt" else "linear"
    draw.text((left, y), f"colour: {scale}, {curve}", fill=INK, font=font)
    y += line
    for names in swatch_lines:
        draw.text((left, y), "frames:", fill=INK, font=font)
        x = left + _text_width("frames: ", font)
        for name in names:
            draw.rectangle([x, y + 2, x + 10, y + 12], outline=CLASS_COLOURS[name], width=3)
            draw.text((x + 14, y), name, fill=INK, font=font)
            x += 14 + _text_width(name, font) + 10
        y += line
    legend = np.asarray(picture)
    legend.flags.writeable = False  # cached: shared by every caller
    return legend


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
    sampling: str = "spread",
    scaling: str = "kernel",
    transfer: str = "linear",
    max_images: int = MAX_IMAGES,
) -> list[tuple[str, list[int], np.ndarray]]:
    """``(group name, layer indices, picture)`` per layer, or per stage for deep models; each
    layer of a group shows at most ``max_kernels // layers`` kernels."""
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}")
    names = report.detailed_classes or CLASSES
    grids = []
    for group, indices in image_groups([layer.name for layer in layers], max_images):
        per_layer = max(1, max_kernels // len(indices))
        blocks, shown, total = [], 0, 0
        for j in indices:
            classes = frame_classes(report.layers[j])
            chosen = select_kernels(classes, per_layer, sampling)
            blocks.append(Block(_as_numpy(layers[j].kernels)[chosen], classes[chosen]))
            shown, total = shown + len(chosen), total + len(classes)
        layer_word = f", {len(indices)} layers" if len(indices) > 1 else ""
        title = f"{report.group} {group}: {selection_words(sampling, shown, total)}{layer_word}"
        grids.append((group, indices, kernel_grid(blocks, names, title, scaling, transfer)))
    return grids


def frame_classes(layer: LayerResult) -> np.ndarray:
    """The class index each kernel is framed with: its detailed class (its own taxonomy)."""
    return layer.detail


def centroid_image(report: KernelReport, scaling: str = "kernel", transfer: str = "linear") -> np.ndarray:
    """Centroids (k-means) or class means (templates), one row per kernel size, each captioned
    with its class, center-surround score, and how many of its kernels have that class by their
    own taxonomy of how many it holds ("12/593": most members of a centroid that looks
    center-surround may not be)."""
    names = [name for name in CLASS_COLOURS if any(c.label == name for c in report.centroids)]
    by_size: dict[tuple[int, int], list] = {}
    for c in report.centroids:
        by_size.setdefault(c.kernel_size, []).append(c)
    if not by_size:
        raise ValueError("the report has no centroids")
    blocks = [
        Block(
            np.stack([c.weights for c in cs]),
            np.array([names.index(c.label) for c in cs]),
            [f"{SHORT_NAMES[c.label]} {c.score:+.2f} {c.passing}/{c.count}" for c in cs],
        )
        for cs in by_size.values()
    ]
    title = (
        f"{report.centroid_name} per kernel size: class, DoG score (threshold {_thresholds(report)}), "
        "members of that class / members"
    )
    return kernel_grid(blocks, names, title, scaling, transfer, ncols=max(len(cs) for cs in by_size.values()))


def layer_shares_image(report: KernelReport) -> np.ndarray:
    """Layers (rows, network order) x classes (columns): each share, and the chance share of on
    and off; a cell's colour runs from white (0) to its class colour (1)."""
    font = _font()
    cell, row_height = 42, FONT_SIZE + 6
    names = [layer.name for layer in report.layers]
    suffix = _common_suffix(names) if len(names) > 1 else ""
    columns = [
        ("on_center", False, "on"),
        ("off_center", False, "off"),
        ("other", False, "other"),
        ("on_center", True, "ch. on"),
        ("off_center", True, "ch. off"),
    ]
    name_width = max(80, WIDTH - 2 * MARGIN - cell * len(columns))
    width = MARGIN + name_width + cell * len(columns) + MARGIN
    header = 3 * row_height
    picture = Image.new("RGB", (width, header + len(report.layers) * row_height + 6), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    title = f"class shares per layer ({report.classifier})" + (f", layers *{suffix}" if suffix else "")
    draw.text((MARGIN, 2), _shorten(title, width - 2 * MARGIN, font), fill=INK, font=font)
    draw.text(
        (MARGIN, 2 + row_height), "ch. = chance: the same classifier on null kernels", fill=INK, font=font
    )
    for c, (_, _, label) in enumerate(columns):
        draw.text((MARGIN + name_width + c * cell + 3, 2 + 2 * row_height), label, fill=INK, font=font)
    for r, layer in enumerate(report.layers):
        y = header + r * row_height
        name = layer.name[: len(layer.name) - len(suffix)] if suffix else layer.name
        draw.text((MARGIN, y + 2), _shorten(name, name_width - 6, font), fill=INK, font=font)
        observed, chance = report.proportions([layer]), report.chance([layer])
        for c, (name, is_chance, _) in enumerate(columns):
            share = chance[name] if is_chance else observed[name]
            colour = np.array(CLASS_COLOURS[name], dtype=np.float64)
            fill = tuple(int(v) for v in 255 - share * (255 - colour))  # white (0) to the class colour (1)
            x = MARGIN + name_width + c * cell
            draw.rectangle([x, y, x + cell - 3, y + row_height - 3], fill=fill)
            draw.text((x + 4, y + 2), f"{share:.0%}", fill=INK, font=font)
    return np.asarray(picture)


def taxonomy_image(report: KernelReport) -> np.ndarray:
    """One bar per detailed class (its colour) over all kernels, with a black tick and the number
    at its chance share: which patterns the kernels hold, and whether above chance, at a glance."""
    font = _font()
    row_height, name_width, number_width, width = FONT_SIZE + 8, 120, 170, 600
    bar_width = width - 2 * MARGIN - name_width - number_width
    header = 2 * row_height
    classes = report.detailed_classes
    picture = Image.new("RGB", (width, header + len(classes) * row_height + 6), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    explained, explained_chance = report.explained(), report.explained(null=True)
    title = (
        f"{report.group} kernel taxonomy ({report.classifier}, {report.n_kernels} kernels, threshold "
        f"{_thresholds(report)}): named {explained:.0%} (chance {explained_chance:.0%})"
    )
    draw.text((MARGIN, 2), _shorten(title, width - 2 * MARGIN, font), fill=INK, font=font)
    draw.text(
        (MARGIN, 2 + row_height),
        "bar: share of kernels; black tick: chance share (pixel-permuted kernels)",
        fill=INK,
        font=font,
    )
    observed, chance = report.detailed_proportions(), report.detailed_chance()
    for r, name in enumerate(classes):
        y = header + r * row_height
        x0 = MARGIN + name_width
        draw.text((MARGIN, y + 2), name.replace("_", " "), fill=INK, font=font)
        draw.rectangle([x0, y + 3, x0 + bar_width, y + row_height - 3], outline=(220, 220, 220))
        if observed[name] > 0:
            draw.rectangle(
                [x0, y + 3, x0 + round(observed[name] * bar_width), y + row_height - 3],
                fill=CLASS_COLOURS[name],
            )
        tick = x0 + round(chance[name] * bar_width)
        draw.rectangle([tick - 1, y + 1, tick + 1, y + row_height - 1], fill=INK)
        draw.text(
            (x0 + bar_width + 8, y + 2),
            f"{observed[name]:6.1%} (chance {chance[name]:.1%})",
            fill=INK,
            font=font,
        )
    return np.asarray(picture)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an ``[H, W, 3]`` uint8 image as PNG (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, optimize=False, compress_level=1)
    return path


# --------------------------------------------------------------------------------------------
# drawing


def _blank(shape: tuple[int, ...]) -> np.ndarray:
    """A white uint8 image of ``shape`` (BACKGROUND is white: one memset, not a broadcast fill)."""
    return np.full(shape, 255, np.uint8)


def _check_choices(scaling: str, transfer: str) -> None:
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}; got {scaling!r}")
    if transfer not in TRANSFERS:
        raise ValueError(f"transfer must be one of {TRANSFERS}; got {transfer!r}")


@functools.lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)  # Pillow's bundled font (FreeType)
    except (TypeError, OSError):  # no FreeType: the small bitmap font
        return ImageFont.load_default()


@functools.lru_cache(maxsize=4096)
def _text_width(text: str, font) -> float:
    return ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(text, font=font)


def _shorten(text: str, width: float, font) -> str:
    if _text_width(text, font) <= width:
        return text
    while text and _text_width("..." + text, font) > width:
        text = text[1:]
    return "..." + text


def _text_strip(text: str, width: int) -> np.ndarray:
    """``text`` in as many lines as ``width`` needs (broken at spaces)."""
    font, lines = _font(), [""]
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}".strip()
        if lines[-1] and _text_width(candidate, font) > width - 2 * MARGIN:
            lines.append(word)
        else:
            lines[-1] = candidate
    picture = Image.new("RGB", (width, len(lines) * (FONT_SIZE + 4) + 6), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    for i, text_line in enumerate(lines):
        draw.text(
            (MARGIN, 3 + i * (FONT_SIZE + 4)),
            _shorten(text_line, width - 2 * MARGIN, font),
            fill=INK,
            font=font,
        )
    return np.asarray(picture)


def _common_suffix(names: Sequence[str]) -> str:
    """The ``.``-separated tail every name shares (e.g. ``.conv_dw``), never a whole name."""
    parts = [name.split(".") for name in names]
    tail: list[str] = []
    while all(len(p) > len(tail) + 1 for p in parts) and len({p[-1 - len(tail)] for p in parts}) == 1:
        tail.insert(0, parts[0][-1 - len(tail)])
    return "." + ".".join(tail) if tail else ""


def _thresholds(report: KernelReport) -> str:
    return ", ".join(f"{size} {value:.2f}" for size, value in report.thresholds.items())


def _as_numpy(kernels: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(kernels, Tensor):
        kernels = kernels.detach().to("cpu", torch.float32).numpy()
    return np.asarray(kernels, dtype=np.float32)


def _cells(
    block: Block,
    class_names: Sequence[str],
    cell_size: tuple[int, int],
    zoom: int,
    limit: float | None,
    transfer: str,
) -> np.ndarray:
    """``[n, ch, cw, 3]`` uint8: each kernel coloured, enlarged, centred in its cell and framed."""
    kernels = _as_numpy(block.kernels)
    n, kh, kw = kernels.shape
    if limit is None:  # each kernel by its own max |w|
        scale = np.abs(kernels).reshape(n, -1).max(axis=1)[:, None, None]
    else:
        scale = np.full((n, 1, 1), limit, np.float32)
    scaled = kernels / np.where(scale > 0, scale, 1.0)  # in [-1, 1]
    if transfer == "signed_sqrt":
        scaled = np.sign(scaled) * np.sqrt(np.abs(scaled))  # sign(x) sqrt(|x|)
    rgb = matplotlib.colormaps[CMAP]((scaled + 1) / 2, bytes=True)[..., :3]  # 0 -> centre of the map
    rgb = rgb.repeat(zoom, axis=1).repeat(zoom, axis=2)

    ch, cw = cell_size[0] * zoom + 2 * FRAME, cell_size[1] * zoom + 2 * FRAME
    cells = np.empty((n, ch, cw, 3), np.uint8)
    palette = np.array([CLASS_COLOURS[name] for name in class_names], np.uint8)
    cells[:] = palette[np.asarray(block.classes)][:, None, None, :]
    top, left = (ch - kh * zoom) // 2, (cw - kw * zoom) // 2
    if (kh, kw) != cell_size:  # smaller kernel: background inside the frame
        cells[:, FRAME : ch - FRAME, FRAME : cw - FRAME] = BACKGROUND
    cells[:, top : top + kh * zoom, left : left + kw * zoom] = rgb
    return cells


def _captioned(cells: np.ndarray, captions: Sequence[str] | None) -> np.ndarray:
    """Cells widened to fit a caption each, written under them (unchanged without captions)."""
    if captions is None:
        return cells
    n, ch, cw, _ = cells.shape
    font = _font()
    width = max(cw, *(int(_text_width(c, font)) + 6 for c in captions))
    out = _blank((n, ch + FONT_SIZE + 6, width, 3))
    out[:, :ch, (width - cw) // 2 : (width - cw) // 2 + cw] = cells
    for i, caption in enumerate(captions):
        cell = Image.fromarray(out[i])
        ImageDraw.Draw(cell).text((3, ch + 2), caption, fill=INK, font=font)
        out[i] = np.asarray(cell)
    return out


def _grid_rows(cells: np.ndarray, ncols: int) -> np.ndarray:
    """Tile ``[n, ch, cw, 3]`` cells into rows of ``ncols`` with GAP px between them."""
    n, ch, cw, _ = cells.shape
    nrows = int(np.ceil(n / ncols))
    padded = _blank((nrows * ncols, ch + GAP, cw + GAP, 3))
    padded[:n, :ch, :cw] = cells
    grid = padded.reshape(nrows, ncols, ch + GAP, cw + GAP, 3).transpose(0, 2, 1, 3, 4)
    return grid.reshape(nrows * (ch + GAP), ncols * (cw + GAP), 3)[:-GAP, :-GAP]


def _pad_width(image: np.ndarray, width: int) -> np.ndarray:
    """``image`` on a ``width``-wide background, MARGIN px from the left."""
    out = _blank((image.shape[0], width, 3))
    out[:, MARGIN : MARGIN + image.shape[1]] = image
    return out


__all__ = [
    "CLASS_COLOURS",
    "CMAP",
    "SAMPLINGS",
    "SCALINGS",
    "TRANSFERS",
    "Block",
    "centroid_image",
    "frame_classes",
    "grouped_grid_images",
    "image_groups",
    "kernel_grid",
    "layer_shares_image",
    "legend_strip",
    "save_png",
    "select_kernels",
    "selection_words",
]
