"""The ``analyze`` command: classify the depthwise kernels of a checkpoint or a timm model, offline.

    python run.py analyze --checkpoint FILE [--model NAME] [--out DIR] [--method kmeans|template]
                          [--clusters K] [--threshold T] [--seed S] [--layers REGEX] [--max-kernels N]

Inputs:

- ``--checkpoint FILE`` alone: kernels are read straight from the file, with no model code
  (:mod:`neural_echos.collect`): a Lightning ``.ckpt``, a torch state dict (plain or under
  ``state_dict`` / ``model``), or ``.safetensors``. Works for models this project has no code for.
- ``--model NAME`` alone: the fresh initialisation of ``timm.create_model(NAME, pretrained=False)``,
  created under ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the caller's random
  state is untouched).
- both: the checkpoint is loaded into that timm model, strictly, after stripping a ``model.``
  prefix (our Lightning module keeps the timm model as ``self.model``; other module attributes
  such as loss buffers are dropped) and ``module.`` / ``_orig_mod.`` prefixes; the kernels are then
  taken from the model. This checks that the checkpoint fits the architecture (a mismatch is an
  error listing missing / unexpected keys); the results equal the file-only analysis.

Outputs in ``--out`` (default ``analysis_out``):

- ``summary.json``: ``kernels``, three-way ``proportions`` (sum to 1), ``counts``,
  ``by_kernel_size``, ``layers`` (name, key, kernel size, proportions, csv and grid files),
  ``centroids`` (k-means centroids, or class means for templates), ``method`` and settings,
  ``source``; for templates also ``detailed_proportions`` and ``other_explained``.
- ``layers/NNN_<layer>.csv``: one row per kernel. kmeans: ``index,class,cluster,score`` (score:
  center-surround correlation); template: ``index,class,category,correlation,template``.
- ``grids/NNN_<layer or stage>.png``: the first ``--max-kernels`` kernels, per-kernel colour
  scale, framed by class; one image per layer, or per stage (``stages.2``) when there are more
  than 24 layers.
- ``proportions.png`` and ``centroids.png``.

Bad input raises :class:`AnalysisError` (a :class:`neural_echos.errors.NeuralEchosError` and a
``ValueError``); ``main`` prints it as one line ``error: ...`` on stderr and exits with status 2
(``NEURAL_ECHOS_TRACEBACK=1`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neural_echos.classify import (
    CLASSES,
    DEFAULT_CLUSTERS,
    DEFAULT_METHOD,
    DEFAULT_SEED,
    DEFAULT_THRESHOLD,
    METHODS,
    KernelReport,
    check_settings,
    classify_layers,
)
from neural_echos.collect import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FILE_BYTES,
    AnalysisError,
    Checkpoint,
    CheckpointError,
    LayerKernels,
    kernels_from_module,
    kernels_from_state_dict,
    read_checkpoint,
)
from neural_echos.errors import NeuralEchosError

MODEL_PREFIXES = ("model.", "module.", "_orig_mod.")


def analyze(
    checkpoint: str | Path | None = None,
    model: str | None = None,
    out: str | Path = "analysis_out",
    method: str = DEFAULT_METHOD,
    n_clusters: int = DEFAULT_CLUSTERS,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = DEFAULT_SEED,
    layers: str | None = None,
    max_kernels: int = 64,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> dict:
    """Classify the kernels, write the outputs to ``out`` and return the summary (as in summary.json).

    Args:
        checkpoint: checkpoint file (see the module docstring).
        model: timm model name.
        out: output folder (created; files of an earlier run there are replaced).
        method: "kmeans" or "template".
        n_clusters: k for k-means, >= 2.
        threshold: correlation threshold in (0, 1).
        seed: k-means random_state and the seed of a fresh timm model.
        layers: regular expression selecting layers by name (``re.search``).
        max_kernels: kernels drawn per grid image.
        max_bytes, max_file_bytes: size bounds checked before reading (``neural_echos.collect``).

    Raises:
        AnalysisError: any bad input, with a message naming the file or model and the fix.
    """
    start = time.perf_counter()
    check_settings(method, n_clusters, threshold)
    if checkpoint is None and model is None:
        raise AnalysisError(
            "nothing to analyse: pass --checkpoint FILE (a .ckpt, .pt, .pth or .safetensors file), "
            "--model NAME (a timm model, analysed at its random initialisation), or both"
        )
    if max_kernels < 1:
        raise AnalysisError(f"--max-kernels must be at least 1; got {max_kernels}")

    kernel_layers, source = _collect(checkpoint, model, seed, layers, max_bytes, max_file_bytes)
    report = classify_layers(kernel_layers, method, n_clusters=n_clusters, threshold=threshold, seed=seed)
    summary = _write_outputs(Path(out), kernel_layers, report, source, max_kernels)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns 0, or exits with status 2 after ``error: ...`` on stderr."""
    parser = argparse.ArgumentParser(
        prog="run.py analyze",
        description="Classify the depthwise kernels of a checkpoint or timm model as on-center, "
        "off-center or other (Neural Echos, arXiv 2401.10178).",
    )
    parser.add_argument(
        "--checkpoint", help="a Lightning .ckpt, torch .pt/.pth state dict or .safetensors file"
    )
    parser.add_argument("--model", help="timm model name; alone: its seeded random initialisation")
    parser.add_argument("--out", default="analysis_out", help="output folder (default: analysis_out)")
    parser.add_argument(
        "--method", default=DEFAULT_METHOD, help=f"one of {', '.join(METHODS)} (default: kmeans)"
    )
    parser.add_argument("--clusters", type=int, default=DEFAULT_CLUSTERS, help="k for k-means (default: 3)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="correlation threshold in (0, 1) (default: 0.5)",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="k-means and model-init seed (default: 0)"
    )
    parser.add_argument("--layers", help="regular expression selecting layers by name")
    parser.add_argument("--max-kernels", type=int, default=64, help="kernels per grid image (default: 64)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="refuse more depthwise kernel data than this, checked before reading (default: 256 MiB)")
    parser.add_argument("--max-file-bytes", type=int, default=DEFAULT_MAX_FILE_BYTES,
                        help="refuse reading more than this whole (legacy .pt, or a .safetensors with --model) (default: 8 GiB)")
    args = parser.parse_args(argv)
    try:
        summary = analyze(
            checkpoint=args.checkpoint,
            model=args.model,
            out=args.out,
            method=args.method,
            n_clusters=args.clusters,
            threshold=args.threshold,
            seed=args.seed,
            layers=args.layers,
            max_kernels=args.max_kernels,
            max_bytes=args.max_bytes,
            max_file_bytes=args.max_file_bytes,
        )
    except NeuralEchosError as err:  # AnalysisError, NoDepthwiseLayersError, ConfigError
        if os.environ.get("NEURAL_ECHOS_TRACEBACK"):
            raise
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    shares = ", ".join(f"{name} {summary['proportions'][name]:.1%}" for name in CLASSES)
    print(f"{summary['kernels']} kernels in {len(summary['layers'])} layers ({summary['method']}): {shares}")
    if summary.get("other_explained") is not None:
        print(f"derivative templates explain {summary['other_explained']:.1%} of 'other'")
    print(f"wrote {Path(args.out) / 'summary.json'} ({summary['seconds']:.1f} s)")
    return 0


def _collect(
    checkpoint: str | Path | None, model_name: str | None, seed: int, layer_filter: str | None,
    max_bytes: int = DEFAULT_MAX_BYTES, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> tuple[list[LayerKernels], dict]:
    if model_name is None:
        loaded = read_checkpoint(checkpoint, only_depthwise=True, max_bytes=max_bytes, max_file_bytes=max_file_bytes)
        kernel_layers = kernels_from_state_dict(
            loaded.state_dict, layer_filter, source=f"checkpoint {str(checkpoint)!r}", max_bytes=max_bytes
        )
        return kernel_layers, _source(loaded, None, seed)

    model = create_timm_model(model_name, seed)
    loaded = None
    if checkpoint is not None:
        loaded = read_checkpoint(checkpoint, max_bytes=max_bytes, max_file_bytes=max_file_bytes)
        load_into_model(model, model_name, loaded)
    label = model_name if loaded is None else f"{model_name} from {str(checkpoint)!r}"
    kernel_layers = kernels_from_module(model, name_filter=layer_filter, model_name=label)
    return kernel_layers, _source(loaded, model_name, seed)


def create_timm_model(name: str, seed: int = DEFAULT_SEED) -> nn.Module:
    """``timm.create_model(name, pretrained=False)`` seeded, without touching the global RNG state.

    Raises:
        AnalysisError: unknown name (with close names) or a model timm cannot build.
    """
    import timm

    if not timm.is_model(name):
        names = timm.list_models()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        close += [n for n in timm.list_models(f"*{name}*")[:5] if n not in close]
        hint = f"close names: {', '.join(close[:8])}" if close else "see timm.list_models() for the names"
        raise AnalysisError(f"unknown timm model {name!r}; {hint}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = timm.create_model(name, pretrained=False)
        except Exception as err:
            raise AnalysisError(f"timm cannot create model {name!r}: {' '.join(str(err).split())}") from err
    return model.eval()


def load_into_model(model: nn.Module, model_name: str, checkpoint: Checkpoint) -> None:
    """Load a checkpoint's state dict into ``model`` strictly, after stripping wrapper prefixes.

    Raises:
        AnalysisError: keys or shapes do not fit, listing examples of each.
    """
    state_dict = dict(checkpoint.state_dict)
    stripped = True
    while stripped:
        stripped = False
        for prefix in MODEL_PREFIXES:
            wrapped = [k for k in state_dict if k.startswith(prefix)]
            # "model." of a Lightning checkpoint: keep the timm model's entries, drop other attributes
            if wrapped and (len(wrapped) == len(state_dict) or checkpoint.format == "lightning"):
                state_dict = {k[len(prefix) :]: state_dict[k] for k in wrapped}
                stripped = True

    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        kinds = (("missing", missing), ("unexpected", unexpected), ("of another shape", mismatched))
        for what, keys in kinds:
            if keys:
                problems.append(f"{len(keys)} keys {what} (e.g. {', '.join(keys[:3])})")
        raise AnalysisError(
            f"checkpoint {str(checkpoint.path)!r} does not fit timm model {model_name!r}: "
            f"{'; '.join(problems)}. Check --model, or drop --model to read the kernels straight from "
            "the file."
        )
    model.load_state_dict(state_dict, strict=True)


def _source(checkpoint: Checkpoint | None, model_name: str | None, seed: int) -> dict:
    source: dict = {"checkpoint": None, "model": model_name}
    if checkpoint is not None:
        source.update(
            checkpoint=str(checkpoint.path),
            format=checkpoint.format,
            loader=checkpoint.loader,
            nested_key=checkpoint.nested_key,
        )
    else:
        source["init"] = f"timm default initialisation, torch.manual_seed({seed})"
    return source


def _write_outputs(
    out: Path, kernel_layers: list[LayerKernels], report: KernelReport, source: dict, max_kernels: int
) -> dict:
    from neural_echos import plots  # matplotlib: imported only when writing

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "layers").mkdir(exist_ok=True)
        (out / "grids").mkdir(exist_ok=True)
    except OSError as err:
        raise AnalysisError(
            f"cannot create output folder {str(out)!r}: {err.strerror}; pick another --out"
        ) from err
    _remove_earlier_outputs(out)

    summary = {"source": source, **report.to_dict()}
    csv_files = []
    for i, (layer, result, entry) in enumerate(zip(kernel_layers, report.layers, summary["layers"])):
        path = out / "layers" / f"{i:03d}_{_file_stem(layer.name)}.csv"
        _write_layer_csv(path, report, result)
        entry.update(key=layer.key, csv=str(path.relative_to(out)))
        csv_files.append(str(path.relative_to(out)))

    grid_files = []
    legend = plots.frame_legend(report.categories)
    for i, (group, indices, image) in enumerate(plots.grouped_grid_images(kernel_layers, report, max_kernels)):
        n = sum(len(kernel_layers[j]) for j in indices)
        shown = min(n, sum(min(len(kernel_layers[j]), max(1, max_kernels // len(indices))) for j in indices))
        title = f"{group}: {shown} of {n} kernels ({len(indices)} layer{'s' * (len(indices) > 1)}) | {legend}"
        path = plots.save_png(image, out / "grids" / f"{i:03d}_{_file_stem(group)}.png", title=title)
        grid_files.append(str(path.relative_to(out)))
        for j in indices:
            summary["layers"][j]["grid"] = str(path.relative_to(out))

    figure = plots.proportions_figure(report, title=_plot_title(report, source))
    plots.save_figure(figure, out / "proportions.png")
    files = {
        "summary": "summary.json",
        "proportions": "proportions.png",
        "layers": csv_files,
        "grids": grid_files,
    }
    if report.centroids:
        plots.save_figure(plots.centroid_figure(report), out / "centroids.png")
        files["centroids"] = "centroids.png"
    summary["files"] = files
    return summary


def _write_layer_csv(path: Path, report: KernelReport, result) -> None:
    three_way = np.array(CLASSES)[report.three_way(result)]
    score = np.round(result.score.astype(np.float64), 4).tolist()
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        if report.method == "kmeans":
            writer.writerow(["index", "class", "cluster", "score"])
            rows = zip(range(len(result)), three_way, result.cluster.tolist(), score)
        else:
            detail = np.array(report.categories)[result.category]
            writer.writerow(["index", "class", "category", "correlation", "template"])
            rows = zip(range(len(result)), three_way, detail, score, result.template.tolist())
        writer.writerows(rows)


def _remove_earlier_outputs(out: Path) -> None:
    """Remove per-layer files an earlier run wrote here (a different model has different layers)."""
    for folder, suffix in (("layers", ".csv"), ("grids", ".png")):
        for path in (out / folder).glob(f"[0-9][0-9][0-9]_*{suffix}"):
            path.unlink()


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:100] or "layer"


def _plot_title(report: KernelReport, source: dict) -> str:
    if source.get("checkpoint"):
        what = Path(source["checkpoint"]).name
    else:
        what = f"{source.get('model')} (random init)"
    return f"{what}: {report.method}, {report.n_kernels} kernels"


__all__ = ["AnalysisError", "CheckpointError", "analyze", "create_timm_model", "load_into_model", "main"]
