"""The ``compare`` command: which depthwise kernels kept, gained or lost their class between two
checkpoints of one model.

    python run.py compare BEFORE AFTER [--out DIR] [--layers REGEX] [--method template|kmeans]
                          [--threshold T|auto]

Both files are read with no model code (:mod:`neural_echos.collect`: Lightning ``.ckpt``, torch
state dicts, ``.safetensors``) and must hold the same depthwise layers with the same shapes (else
one ``error:`` line). Both are classified with the same classifier (its calibrated threshold
depends only on the kernel size, so both are measured with the same stick); each kernel's
detailed class (:data:`~neural_echos.taxonomy.DETAILED_CLASSES`) in BEFORE and in AFTER gives
the transition table (:mod:`neural_echos.tracking`). Outputs in ``--out`` (default
``compare_out``):

- ``transitions.csv``: rows ``class in BEFORE``, columns ``class in AFTER``, kernel counts
  (the row and column sums are each checkpoint's class counts);
- ``transitions.png``: the same table with each cell's share of its row, retained / gained /
  lost on/off-center with their chance shares (independence of the two classes);
- ``layers.csv``: per layer, kernels, retained share, median cosine distance, relative norm
  change and relative distance of AFTER from BEFORE, and the population signal (DoG energy and
  mean DoG score, each with its permuted null's mean and z) of each checkpoint;
- ``kernels.csv``: one row per kernel: layer, channel, class in BEFORE and in AFTER, ``change``
  (``kept``, ``gained on/off``, ``lost on/off``, ``changed``) and its cosine distance: which
  kernels kept, gained or lost the pattern;
- ``summary.json``: the files, the classifier, the shares with their chance shares, the drift
  over all kernels.

Bad input (a missing or unreadable file, different models) is one line ``error: ...`` and exit
status 2 (``NEURAL_ECHOS_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neural_echos.classifiers import CLASSIFIERS, DEFAULT_CLASSIFIER, get_classifier
from neural_echos.classifiers.base import KernelClassifier
from neural_echos.collect import AnalysisError, LayerKernels, kernels_from_checkpoint
from neural_echos.errors import OneLineArgumentParser, exits_on_user_error
from neural_echos.taxonomy import DETAILED_CLASSES
from neural_echos.tools.analyze import classifier_from_args, parse_with_classifier
from neural_echos.tracking import (
    change_word,
    cosine_distance,
    drift,
    population_signal,
    transition_matrix,
    transition_summary,
)
from neural_echos.tracking_pictures import transition_image


def check_same_model(before: list[LayerKernels], after: list[LayerKernels], names: tuple[str, str]) -> None:
    """Raise :class:`AnalysisError` unless both hold the same layers with the same shapes."""
    shapes = [[(layer.name, tuple(layer.kernels.shape)) for layer in layers] for layers in (before, after)]
    if shapes[0] == shapes[1]:
        return
    if len(before) != len(after):
        detail = f"{names[0]} has {len(before)} depthwise layers, {names[1]} has {len(after)}"
    else:
        (name_a, shape_a), (name_b, shape_b) = next((a, b) for a, b in zip(*shapes, strict=True) if a != b)
        detail = (
            f"layer {name_a} {list(shape_a)} in {names[0]} against {name_b} {list(shape_b)} in {names[1]}"
        )
    raise AnalysisError(
        f"the checkpoints hold different models ({detail}); compare two checkpoints of one model"
    )


def compare(
    before_path: str | Path,
    after_path: str | Path,
    out: str | Path,
    classifier: KernelClassifier | str = DEFAULT_CLASSIFIER,
    name_filter: str | None = None,
) -> dict[str, Any]:
    """Classify both checkpoints with one classifier (an instance, or a registry name with its
    defaults), write the outputs (module docstring) and return the summary."""
    before = kernels_from_checkpoint(before_path, name_filter)
    after = kernels_from_checkpoint(after_path, name_filter)
    check_same_model(before, after, (str(before_path), str(after_path)))
    if isinstance(classifier, str):
        classifier = get_classifier(classifier)
    reports = [classifier.classify(layers) for layers in (before, after)]
    detail = [[np.asarray(layer.detail, dtype=np.int64) for layer in report.layers] for report in reports]
    matrix = transition_matrix(np.concatenate(detail[0]), np.concatenate(detail[1]))
    summary_shares = transition_summary(matrix)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "transitions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["before \\ after", *DETAILED_CLASSES])
        for name, row in zip(DETAILED_CLASSES, matrix, strict=True):
            writer.writerow([name, *row.tolist()])
    image = transition_image(
        [(f"{Path(before_path).name} -> {Path(after_path).name}", matrix)],
        DETAILED_CLASSES,
        f"{matrix.sum()} depthwise kernels, {classifier.name} classifier: detailed classes",
    )
    from PIL import Image

    Image.fromarray(image).save(out / "transitions.png")

    rows, kernel_rows = [], []
    for layer_before, layer_after, d0, d1 in zip(before, after, detail[0], detail[1], strict=True):
        moved = drift(layer_after.kernels, layer_before.kernels)
        distance = cosine_distance(layer_after.kernels, layer_before.kernels)
        kernel_rows += [
            [
                layer_before.name,
                channel,
                DETAILED_CLASSES[a],
                DETAILED_CLASSES[b],
                change_word(a, b),
                round(float(d), 4),
            ]
            for channel, (a, b, d) in enumerate(zip(d0.tolist(), d1.tolist(), distance.tolist(), strict=True))
        ]
        row: dict[str, Any] = {
            "layer": layer_before.name,
            "kernels": len(layer_before),
            "retained": round(float((d0 == d1).mean()), 4),
            "cosine_distance": round(moved.cosine_distance, 4),
            "norm_change": round(moved.norm_change, 4),
            "relative_distance": round(moved.relative_distance, 4),
        }
        for label, layer in (("before", layer_before), ("after", layer_after)):
            for statistic, signal in population_signal(layer.kernels).items():
                row[f"{statistic}_{label}"] = round(signal.observed, 4)
                row[f"{statistic}_null_{label}"] = round(signal.null_mean, 4)
                row[f"{statistic}_z_{label}"] = round(signal.z, 2)
        rows.append(row)
    with open(out / "layers.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(out / "kernels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "channel", "class_before", "class_after", "change", "cosine_distance"])
        writer.writerows(kernel_rows)

    flat = [
        torch.cat([layer.kernels.reshape(len(layer), -1) for layer in layers]) for layers in (before, after)
    ]
    distances = torch.cat([cosine_distance(b.kernels, a.kernels) for b, a in zip(before, after, strict=True)])
    norm = float(flat[0].double().norm()) or float("inf")
    summary = {
        "before": str(before_path),
        "after": str(after_path),
        "classifier": repr(classifier),
        "kernels": int(matrix.sum()),
        "classes": list(DETAILED_CLASSES),
        "counts_before": dict(zip(DETAILED_CLASSES, matrix.sum(axis=1).tolist(), strict=True)),
        "counts_after": dict(zip(DETAILED_CLASSES, matrix.sum(axis=0).tolist(), strict=True)),
        **summary_shares.as_dict(),
        "drift": {
            "cosine_distance": float(distances.median()),
            "norm_change": float(flat[1].double().norm()) / norm - 1.0,
            "relative_distance": float((flat[1].double() - flat[0].double()).norm()) / norm,
        },
        "files": ["transitions.csv", "transitions.png", "layers.csv", "kernels.csv", "summary.json"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """``run.py compare``; returns 0, or exits with status 2 after ``error: ...`` on stderr."""
    parser = OneLineArgumentParser(
        prog="run.py compare",
        description="Which depthwise kernels kept, gained or lost their class between two checkpoints of one "
        "model: the transition table (CSV and PNG), per-layer drift and population signal.",
    )
    parser.add_argument("before", help="the earlier checkpoint (.ckpt, .pt/.pth, .safetensors)")
    parser.add_argument("after", help="the later checkpoint of the same model")
    parser.add_argument("--out", default="compare_out", help="output folder (default: compare_out)")
    parser.add_argument("--layers", help="regular expression selecting depthwise layers by name")
    parser.add_argument(
        "--classifier",
        default=None,
        metavar="NAME_OR_CLASS",
        help=f"kernel classifier, as for run.py analyze: {', '.join(sorted(CLASSIFIERS))} (default "
        f"{DEFAULT_CLASSIFIER}) or a class; its options as --classifier.OPTION VALUE",
    )
    parser.add_argument("--method", default=None, help="same as --classifier NAME")
    parser.add_argument("--threshold", default=None, help="= --classifier.threshold")
    args = parse_with_classifier(parser, argv)  # the classifier as analyze and the snapshot take it
    classifier = classifier_from_args(args)
    summary = compare(args.before, args.after, args.out, classifier, args.layers)
    print(
        f"{summary['kernels']} kernels: retained {summary['retained']:.1%} "
        f"(chance {summary['retained_chance']:.1%}), "
        f"gained on/off {summary['gained']:.1%} (chance {summary['gained_chance']:.1%}), "
        f"lost on/off {summary['lost']:.1%} (chance {summary['lost_chance']:.1%}); median cosine distance "
        f"{summary['drift']['cosine_distance']:.3f}, norm change {summary['drift']['norm_change']:+.1%}"
    )
    print(
        f"wrote {Path(args.out) / 'transitions.csv'}, transitions.png, layers.csv, kernels.csv, summary.json"
    )
    return 0


__all__ = ["check_same_model", "compare", "main"]
