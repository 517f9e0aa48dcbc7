"""The ``analyze`` and ``survey`` commands: classify the kernels of models and checkpoints, offline.

    python run.py analyze [--checkpoint FILE] [--model NAME [--pretrained] [--weights FILE]]
                          [--include-regular] [--out DIR] [--method template|kmeans] [options]
    python run.py survey  [--model NAME]... [--pretrained NAME]... [--checkpoint FILE]...
                          [--weights NAME=FILE]... [--include-regular] [--out DIR] [options]

What is analysed (a "subject"):

- ``--checkpoint FILE`` alone: kernels read straight from the file with no model code
  (:mod:`neural_echos.collect`): a Lightning ``.ckpt``, a torch state dict (plain or under
  ``state_dict`` / ``model``), or ``.safetensors``. Works for models this project has no code for.
- ``--model NAME``: the fresh initialisation of a timm model (this project's HorNet and ConvMixer
  included), created under ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the
  caller's random state is untouched). ``--pretrained``: timm's pretrained weights, from the hub;
  ``--weights FILE`` loads them from a local copy instead, through timm's own
  ``pretrained_cfg_overlay=dict(file=FILE)`` (so timm's key mapping for the model applies).
- ``--model NAME --checkpoint FILE``: the checkpoint loaded into that model, strictly, after
  stripping a ``model.`` prefix (our Lightning module keeps the timm model as ``self.model``;
  other module attributes are dropped) and ``module.`` / ``_orig_mod.`` prefixes. For our own
  Lightning checkpoints the model is rebuilt from the checkpoint's hyper-parameters
  (``num_classes``, ``in_chans``, ``model_kwargs``), so a 10-class CIFAR model fits.

``--include-regular`` adds the control group of the paper's claim that center-surround kernels
appear in depthwise and not in regular convolutions: every 2-D slice ``weight[o, i]`` of the
regular kxk convolutions (``groups == 1``; from a file, every ``[O, I > 1, k, k]`` tensor) whose
window fits a DoG (3x3 and larger: not ConvNeXt's 2x2 downsamplers), classified with the same
classifier and its own chance baseline, reported beside the depthwise kernels. Large models have
millions of slices: at most ``--max-regular-kernels`` (default 100,000) of each kernel size are
classified, drawn uniformly at random (seeded) when there are more; the summary says how many.

The classifier is ``--method template`` (the default: each kernel named by its best template)
or ``kmeans`` (the paper's clustering, k chosen per kernel size, ``--clusters 3`` for the
paper's k). Besides on/off/other, every kernel gets its taxonomy class (on/off-center, blob,
delta, shifted delta, first derivative, second derivative, other; :mod:`neural_echos.taxonomy`).
Every share comes with its chance share (the classifier's null model, see
:mod:`neural_echos.classifiers.base`) and the excess over it.

Outputs of ``analyze`` in ``--out`` (default ``analysis_out``, or ``analysis_out-2``, ... when it
holds an earlier analysis):

- ``summary.json``: the depthwise report at the top level (``kernels``, ``thresholds`` per
  size, ``proportions`` / ``chance`` / ``excess`` overall, ``by_kernel_size`` and per ``layers``,
  ``centroids``, ``method`` and ``settings``), ``regular`` (the same for regular convolutions,
  with ``--include-regular``), ``source`` and ``files``.
- ``layers/NNN_<layer>.csv`` (and ``regular/NNN_<layer>.csv``): one row per kernel:
  ``index,class,detailed_class,score,antagonism,null_class,null_detailed_class`` and the
  classifier's own columns (k-means: ``cluster``; templates: ``correlation,template``).
- ``grids/NNN_<layer or stage>.png``: kernel grids framed by class.
- ``proportions.png`` (observed and chance shares, every group, size and layer),
  ``taxonomy.png`` (every taxonomy class with its chance share) and ``centroids.png``.

A rerun into the same ``--out`` removes the per-layer files that the earlier run listed in its
``summary.json`` (with analyze's own names) and no other file.

Bounds: the file-reading bounds of :mod:`neural_echos.collect` (``--max-bytes``,
``--max-file-bytes``) and the analysis budget of :mod:`neural_echos.budget` (``--max-kernel-side``
31, ``--max-layers`` 1,000, ``--max-memory`` 4 GiB), checked from the declared shapes before
any kernel is copied or classified.

``survey`` runs ``analyze`` on every subject (into ``--out/NN_<label>/``) and writes one table,
``survey.csv`` and ``survey.md`` (subject, group, kernel size, kernels, threshold, on and off
each with its chance share, excess, the share the taxonomy names with its chance; the CSV also
has every taxonomy class with its chance share), and ``survey.png`` comparing them: the paper's cross-architecture
comparison as one command.

Bad input raises :class:`AnalysisError` (a :class:`neural_echos.errors.NeuralEchosError` and a
``ValueError``); ``main`` prints it as one line ``error: ...`` on stderr and exits with status 2
(``NEURAL_ECHOS_TRACEBACK=1`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import importlib
import inspect
import json
import re
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neural_echos.budget import DEFAULT_MAX_MEMORY, MAX_KERNEL_SIDE, MAX_LAYERS, check_budget
from neural_echos.checkpoints import Reader, check_file
from neural_echos.classifiers import (
    CLASSES,
    CLASSIFIERS,
    DEFAULT_CLASSIFIER,
    NULL_MODELS,
    KernelClassifier,
    KernelReport,
    get_classifier,
)
from neural_echos.collect import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FILE_BYTES,
    WRAPPER_PREFIXES,
    AnalysisError,
    Checkpoint,
    CheckpointError,
    LayerKernels,
    kernels_from_module,
    kernels_from_state_dict,
    read_checkpoint,
    regular_kernels_from_module,
    regular_kernels_from_state_dict,
)
from neural_echos.errors import (
    NeuralEchosError,
    OneLineArgumentParser,
    exits_on_user_error,
    one_line,
    positive_int,
)
from neural_echos.taxonomy import DETAILED_CLASSES

DEFAULT_SEED = 0
MAX_KERNELS_DRAWN = 64
MAX_REGULAR_KERNELS = 100_000


@dataclass
class Subject:
    """One thing to analyse: a checkpoint file, a timm model (fresh or pretrained), or both."""

    checkpoint: Path | None = None
    model: str | None = None
    pretrained: bool = False
    weights: Path | None = None
    name: str | None = None  # a label given by survey when two subjects would read alike

    def __post_init__(self) -> None:
        if self.checkpoint is None and self.model is None:
            raise AnalysisError(
                "nothing to analyse: pass --checkpoint FILE (a .ckpt, .pt, .pth or .safetensors file), "
                "--model NAME (a timm model, analysed at its random initialisation), or both"
            )
        if self.weights is not None:
            self.pretrained = True
        if self.pretrained and self.model is None:
            raise AnalysisError(
                "--pretrained and --weights need --model NAME (the timm model the weights are for)"
            )
        if self.pretrained and self.checkpoint is not None:
            raise AnalysisError(
                "--pretrained loads timm's weights and --checkpoint loads yours: pass one of them"
            )

    @property
    def label(self) -> str:
        if self.name is not None:
            return self.name
        if self.checkpoint is not None:
            name = Path(self.checkpoint).name
            return f"{self.model} from {name}" if self.model else name
        return f"{self.model} ({'pretrained' if self.pretrained else 'random init'})"


def analyze(
    subject: Subject,
    classifier: KernelClassifier | None = None,
    out: str | Path = "analysis_out",
    layers: str | None = None,
    max_kernels: int = MAX_KERNELS_DRAWN,
    include_regular: bool = False,
    max_regular_kernels: int = MAX_REGULAR_KERNELS,
    seed: int = DEFAULT_SEED,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_memory: int = DEFAULT_MAX_MEMORY,
    max_layers: int = MAX_LAYERS,
    max_kernel_side: int = MAX_KERNEL_SIDE,
) -> dict[str, Any]:
    """Classify the kernels of ``subject``, write the outputs to ``out`` and return the summary.

    Args:
        subject: what to analyse (see the module docstring).
        classifier: default: ``get_classifier(DEFAULT_CLASSIFIER)`` (the template classifier).
        out: output folder (created). The per-layer files that an earlier run there recorded in its
            ``summary.json`` are removed; no other file in the folder is touched.
        layers: regular expression selecting depthwise layers by name (``re.search``).
        max_kernels: kernels drawn per grid image.
        include_regular: also classify the slices of the regular convolutions.
        max_regular_kernels: at most this many regular slices per kernel size (a seeded sample).
        seed: seed of a fresh timm model and of the regular-slice sample.
        max_bytes, max_file_bytes: size bounds checked before reading (``neural_echos.collect``).
        max_memory, max_layers, max_kernel_side: the analysis budget (``neural_echos.budget``),
            checked on the declared shapes before any kernel is copied or classified.

    Raises:
        AnalysisError: any bad input, with a message naming the file or model and the fix.
    """
    start = time.perf_counter()
    classifier = classifier or get_classifier(DEFAULT_CLASSIFIER)
    if max_kernels < 1:
        raise AnalysisError(f"--max-kernels must be at least 1; got {max_kernels}")
    if max_regular_kernels < 1:
        raise AnalysisError(f"--max-regular-kernels must be at least 1; got {max_regular_kernels}")
    for flag, value in (
        ("--max-bytes", max_bytes),
        ("--max-file-bytes", max_file_bytes),
        ("--max-memory", max_memory),
        ("--max-layers", max_layers),
        ("--max-kernel-side", max_kernel_side),
    ):
        if value < 1:
            raise AnalysisError(f"{flag} must be a positive number; got {value}")

    budget = {"max_memory": max_memory, "max_layers": max_layers, "max_kernel_side": max_kernel_side}
    bounds = {"max_bytes": max_bytes, "max_file_bytes": max_file_bytes, "budget": budget}
    depthwise, regular, source = collect_subject(subject, layers, include_regular, seed, bounds)
    check_budget(
        _shapes(depthwise), f"the subject {subject.label!r}", **budget
    )  # --model: before classifying
    groups = [("depthwise", depthwise, classifier.classify(depthwise))]
    if include_regular:
        regular, sampled = _sample_layers(regular, max_regular_kernels, seed)
        source["regular_kernels_sampled"] = sampled
        check_budget(_shapes(regular), f"the regular convolutions of {subject.label!r}", **budget)
        if regular:
            groups.append(("regular", regular, classifier.classify(regular, group="regular")))
        else:
            source["regular_kernels"] = "none: the model has no regular kxk convolution (k > 1)"
    summary = _write_outputs(Path(out), groups, source, max_kernels)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def survey(
    subjects: Sequence[Subject],
    classifier: KernelClassifier | None = None,
    out: str | Path = "survey_out",
    include_regular: bool = False,
    max_regular_kernels: int = MAX_REGULAR_KERNELS,
    seed: int = DEFAULT_SEED,
    bounds: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """``analyze`` every subject into ``out/NN_<label>/`` and write the comparison table and figure.

    ``bounds``: :func:`analyze`'s ``max_bytes``, ``max_file_bytes``, ``max_memory``, ``max_layers``
    and ``max_kernel_side`` for every subject (default: analyze's defaults).

    Returns the table rows (as in ``survey.csv``).
    """
    if not subjects:
        raise AnalysisError("nothing to survey: pass --model, --pretrained or --checkpoint (each may repeat)")
    classifier = classifier or get_classifier(DEFAULT_CLASSIFIER)
    out = Path(out)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for i, subject in enumerate(distinct_labels(subjects)):
        folder = out / f"{i:02d}_{_file_stem(subject.label)}"
        summary = analyze(
            subject,
            classifier,
            folder,
            include_regular=include_regular,
            max_regular_kernels=max_regular_kernels,
            seed=seed,
            **(bounds or {}),
        )
        for group in (summary, summary.get("regular")):
            if group is None:
                continue
            for size, entry in group["by_kernel_size"].items():
                rows.append(_survey_row(subject.label, group["group"], size, entry, folder.name, classifier))
            notes += [f"{subject.label}, {group['group']}: {note}" for note in group["notes"]]
    _write_survey(out, rows, classifier, notes)
    return rows


# --------------------------------------------------------------------------------------------
# subjects


def distinct_labels(subjects: Sequence[Subject]) -> list[Subject]:
    """The subjects, those whose labels read alike (two runs' ``last.ckpt``) named by as many of
    their checkpoint's last path parts as tell them apart (``dog/version_0/checkpoints/last.ckpt``)."""
    labels = [subject.label for subject in subjects]
    result = list(subjects)
    for i, subject in enumerate(subjects):
        alike = [
            j for j, label in enumerate(labels) if label == labels[i] and subjects[j].checkpoint is not None
        ]
        if len(alike) < 2 or subject.checkpoint is None:
            continue
        paths = [Path(subjects[j].checkpoint).resolve() for j in alike]
        for depth in range(2, max(len(path.parts) for path in paths) + 1):
            tails = ["/".join(path.parts[-depth:]) for path in paths]
            if len(set(tails)) == len(tails):
                break
        name = tails[alike.index(i)]
        result[i] = replace(subject, name=f"{subject.model} from {name}" if subject.model else name)
    return result


def collect_subject(
    subject: Subject,
    layer_filter: str | None,
    include_regular: bool,
    seed: int = DEFAULT_SEED,
    bounds: dict[str, int] | None = None,
) -> tuple[list[LayerKernels], list[LayerKernels], dict[str, Any]]:
    """Depthwise kernels, regular slices (empty unless ``include_regular``) and a source record.

    ``bounds``: ``max_bytes`` / ``max_file_bytes`` of :func:`neural_echos.collect.read_checkpoint`
    and ``budget`` (keyword arguments of :func:`neural_echos.budget.check_budget`).
    """
    bounds = dict(bounds or {})
    budget = bounds.pop("budget", None)
    checkpoint = subject.checkpoint
    if subject.model is None:
        loaded = read_checkpoint(checkpoint, only_depthwise=not include_regular, **bounds)
        where = f"checkpoint {str(checkpoint)!r}"
        depthwise = kernels_from_state_dict(
            loaded.state_dict,
            layer_filter,
            source=where,
            max_bytes=bounds.get("max_bytes", DEFAULT_MAX_BYTES),
            budget=budget,
        )
        regular = regular_kernels_from_state_dict(loaded.state_dict) if include_regular else []
        return depthwise, regular, _source(subject, loaded, seed)

    loaded = read_checkpoint(checkpoint, **bounds) if checkpoint is not None else None
    hparams = _model_hparams(loaded, subject.model) if loaded is not None else None
    model = create_model(subject.model, seed, subject.pretrained, subject.weights, hparams)
    if loaded is not None:
        load_into_model(model, subject.model, loaded)
    depthwise = kernels_from_module(model, name_filter=layer_filter, model_name=subject.label)
    regular = regular_kernels_from_module(model) if include_regular else []
    return depthwise, regular, _source(subject, loaded, seed)


def create_model(
    name: str,
    seed: int = DEFAULT_SEED,
    pretrained: bool = False,
    weights: str | Path | None = None,
    hparams: dict[str, Any] | None = None,
) -> nn.Module:
    """A timm model (ours registered too): seeded fresh init, pretrained weights, or rebuilt from
    our checkpoint's hyper-parameters. The global RNG state is left as it was.

    Raises:
        AnalysisError: unknown name (with close names), weights that cannot be had or loaded, or a
            model timm cannot build.
    """
    import timm

    import neural_echos.models  # noqa: F401  (registers HorNet and ConvMixer with timm)
    from neural_echos.models.build import build_timm_model

    if not timm.is_model(name):
        names = timm.list_models()
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        close += [n for n in timm.list_models(f"*{name}*")[:5] if n not in close]
        hint = f"close names: {', '.join(close[:8])}" if close else "see timm.list_models() for the names"
        raise AnalysisError(f"unknown timm model {name!r}; {hint}")
    if weights is not None:
        _check_weights_file(Path(weights))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            if pretrained:
                overlay = None if weights is None else {"file": str(weights)}
                with _hub_offline_unless_reachable(weights is None):
                    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
            elif hparams is not None:
                model = build_timm_model(
                    name,
                    hparams["num_classes"],
                    hparams.get("in_chans", 3),
                    hparams.get("image_size"),
                    hparams.get("model_kwargs"),
                )
            else:
                model = timm.create_model(name, pretrained=False)
        except NeuralEchosError:
            raise
        except Exception as err:
            raise _model_error(name, pretrained, weights, err) from err
    return model.eval()


HUB_PROBE_SECONDS = 3.0


@contextlib.contextmanager
def _hub_offline_unless_reachable(download: bool):
    """Hugging Face Hub's offline mode while timm fetches weights, when the hub cannot be reached
    within :data:`HUB_PROBE_SECONDS`: weights in the local cache still load, others fail at once
    instead of after huggingface_hub's retries (22 lines over 52 s without network). The hub has
    no such probe of its own; its offline switch is read at each request (constants.HF_HUB_OFFLINE)."""
    if not download:
        yield
        return
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=HUB_PROBE_SECONDS):
            reachable = True
    except OSError:
        reachable = False
    if reachable or constants.HF_HUB_OFFLINE:
        yield
        return
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


WEIGHTS_FORMATS = (
    "--weights takes the model's pretrained weights as a .safetensors file or a torch state dict "
    "(.pth, .pt or .bin, written by torch.save)"
)


WEIGHTS = Reader(
    what="weights file",
    error=AnalysisError,
    accepts=WEIGHTS_FORMATS.removeprefix("--weights takes "),
    empty_hint=f"{WEIGHTS_FORMATS}; re-download or re-save it",
)


def _check_weights_file(weights: Path) -> None:
    """Refuse a ``--weights`` file that is missing, or no weights file at all (garbage, truncated),
    before timm reads it: from timm, torch's messages for such a file speak of trusting a
    checkpoint (``weights_only=False``), which no option here can do. Reads the header only."""
    path = str(weights)
    # the checks every checkpoint reader shares (neural_echos.checkpoints); timm's loader refuses a
    # TorchScript archive too, but our error path would read it
    check_file(weights, WEIGHTS)
    if path.endswith(".safetensors"):
        problem = _safetensors_problem(weights)
        if problem is not None:
            raise AnalysisError(
                f"weights file {path!r} could not be read as a safetensors file ({problem}): it is truncated or "
                f"not a safetensors file. {WEIGHTS_FORMATS}; re-download or re-save it"
            )
        return
    with weights.open("rb") as f:
        head = f.read(4)
    # torch.save's zip format, or its legacy format: a pickle of protocol 2 to 5
    if zipfile.is_zipfile(weights) or (
        head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
    ):
        return
    if head[:2] == b"PK":
        what = "it is a zip archive without its end (torch.save's format, truncated)"
    elif _safetensors_problem(weights) is None:
        what = "it is a safetensors file under another name: rename it to end in .safetensors"
    else:
        what = "it is neither a torch file nor a safetensors file"
    raise AnalysisError(
        f"weights file {path!r} could not be read as a weights file: {what}. {WEIGHTS_FORMATS}"
    )


def _weights_read_problem(weights: Path) -> str | None:
    """Why ``weights`` cannot be read at all (our own safe loaders), or ``None`` if it can."""
    try:
        read_checkpoint(weights)
    except CheckpointError as err:
        cause = err.__cause__ or err
        return one_line(str(cause), limit=200) or type(cause).__name__
    return None


def _safetensors_problem(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            f.keys()
    except Exception as err:  # noqa: BLE001  (safetensors raises its own and Rust panics for a bad file)
        return one_line(str(err), limit=200) or type(err).__name__
    return None


def _model_error(name: str, pretrained: bool, weights: str | Path | None, err: Exception) -> AnalysisError:
    reason = one_line(err, 300)
    if pretrained and weights is not None:
        unreadable = _weights_read_problem(Path(weights))
        if unreadable is not None:
            return AnalysisError(
                f"weights file {str(weights)!r} could not be read as a weights file ({unreadable}): it is corrupt or "
                f"truncated. {WEIGHTS_FORMATS}; re-download or re-save it"
            )
        if "weights_only" in reason:  # readable, but not by torch's weights-only loader that timm uses
            return AnalysisError(
                f"weights file {str(weights)!r} holds Python objects besides tensors (a Lightning .ckpt?), so timm "
                f"does not load it. {WEIGHTS_FORMATS}; for a checkpoint of your own, pass "
                f"--checkpoint FILE --model {name}"
            )
    if pretrained and weights is None:
        return AnalysisError(
            f"cannot get timm's pretrained weights for {name!r} ({type(err).__name__}: {reason}). Without "
            "internet, download them elsewhere (timm.create_model(NAME, pretrained=True), then "
            "safetensors.torch.save_file(model.state_dict(), 'NAME.safetensors')) and pass --weights FILE"
        )
    if pretrained:
        return AnalysisError(
            f"cannot load weights file {str(weights)!r} into timm model {name!r} ({reason}); pass the "
            "model's own pretrained weights (.safetensors, .pth or .bin)"
        )
    return AnalysisError(f"timm cannot create model {name!r}: {reason}")


def _model_hparams(checkpoint: Checkpoint, model_name: str) -> dict[str, Any] | None:
    """Our Lightning checkpoint's model hyper-parameters, when it was trained as ``model_name``."""
    hparams = checkpoint.hyper_parameters
    if "num_classes" not in hparams or "model_name" not in hparams:
        return None
    if hparams["model_name"] != model_name:
        raise AnalysisError(
            f"checkpoint {str(checkpoint.path)!r} was trained as {hparams['model_name']!r}, not {model_name!r}; "
            f"pass --model {hparams['model_name']} (or drop --model to read the kernels straight from the file)"
        )
    return hparams


def load_into_model(model: nn.Module, model_name: str, checkpoint: Checkpoint) -> None:
    """Load a checkpoint's state dict into ``model`` strictly, after stripping wrapper prefixes.

    Raises:
        AnalysisError: keys or shapes do not fit, listing examples of each.
    """
    state_dict = dict(checkpoint.state_dict)
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
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


def _source(subject: Subject, checkpoint: Checkpoint | None, seed: int) -> dict[str, Any]:
    source: dict[str, Any] = {"label": subject.label, "checkpoint": None, "model": subject.model}
    if checkpoint is not None:
        source.update(
            checkpoint=str(checkpoint.path),
            format=checkpoint.format,
            loader=checkpoint.loader,
            nested_key=checkpoint.nested_key,
        )
    elif subject.pretrained:
        source["init"] = "timm pretrained weights" + (
            f" from {str(subject.weights)!r}" if subject.weights else ""
        )
    else:
        source["init"] = f"timm default initialisation, torch.manual_seed({seed})"
    return source


def _sample_layers(
    layers: list[LayerKernels], cap: int, seed: int
) -> tuple[list[LayerKernels], dict[str, dict[str, int]]]:
    """At most ``cap`` kernels of each kernel size, drawn uniformly without replacement (seeded),
    so that a small layer (a stem) keeps its share of its own size's table row."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, layer in enumerate(layers):
        by_size.setdefault(layer.kernel_size, []).append(i)
    generator = torch.Generator().manual_seed(seed)
    keep: dict[int, torch.Tensor] = {}
    record = {}
    for size, indices in by_size.items():
        total = sum(len(layers[i]) for i in indices)
        record[f"{size[0]}x{size[1]}"] = {"kernels": min(total, cap), "of": total}
        chosen = torch.zeros(total, dtype=torch.bool)
        chosen[torch.randperm(total, generator=generator)[:cap]] = True
        start = 0
        for i in indices:
            keep[i] = chosen[start : start + len(layers[i])]
            start += len(layers[i])
    sampled = [LayerKernels(layer.name, layer.key, layer.kernels[keep[i]]) for i, layer in enumerate(layers)]
    return [layer for layer in sampled if len(layer)], record


# --------------------------------------------------------------------------------------------
# outputs


def _write_outputs(
    out: Path, groups: list[tuple[str, list[LayerKernels], KernelReport]], source: dict, max_kernels: int
) -> dict[str, Any]:
    from neural_echos import grids, plots  # matplotlib: imported only when writing

    folders = {"depthwise": "layers", "regular": "regular"}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for folder in (*(folders[name] for name, _, _ in groups), "grids"):  # regular/ only with its group
            (out / folder).mkdir(exist_ok=True)
    except OSError as err:
        raise AnalysisError(
            f"cannot create output folder {str(out)!r}: {err.strerror}; pick another --out"
        ) from err
    _remove_earlier_outputs(out, keep={folders[name] for name, _, _ in groups})

    files: dict[str, Any] = {"summary": "summary.json", "proportions": "proportions.png", "grids": []}
    summaries = {}
    for name, kernel_layers, report in groups:
        summary = report.to_dict()
        prefix = "" if name == "depthwise" else f"{name}_"
        csv_files = []
        for i, (layer, result, entry) in enumerate(zip(kernel_layers, report.layers, summary["layers"])):
            path = out / folders[name] / f"{i:03d}_{_file_stem(layer.name)}.csv"
            _write_layer_csv(path, result)
            entry.update(key=layer.key, csv=str(path.relative_to(out)))
            csv_files.append(str(path.relative_to(out)))
        files[folders[name]] = csv_files
        for i, (group, indices, image) in enumerate(
            grids.grouped_grid_images(kernel_layers, report, max_kernels)
        ):
            path = grids.save_png(image, out / "grids" / f"{prefix}{i:03d}_{_file_stem(group)}.png")
            files["grids"].append(str(path.relative_to(out)))
            for j in indices:
                summary["layers"][j]["grid"] = str(path.relative_to(out))
        summaries[name] = summary

    reports = [report for _, _, report in groups]
    plots.save_figure(
        plots.proportions_figure(reports, title=_plot_title(reports[0], source)), out / "proportions.png"
    )
    grids.save_png(grids.taxonomy_image(reports[0]), out / "taxonomy.png")
    files["taxonomy"] = "taxonomy.png"
    if any(report.centroids for report in reports):
        plots.save_figure(plots.centroid_figure(reports[0]), out / "centroids.png")
        files["centroids"] = "centroids.png"
    summary = {"source": source, **summaries["depthwise"]}
    if "regular" in summaries:
        summary["regular"] = summaries["regular"]
    summary["files"] = files
    return summary


def _write_layer_csv(path: Path, result) -> None:
    columns = {
        "index": np.arange(len(result)),
        "class": np.array(CLASSES)[result.label],
        "detailed_class": np.array(DETAILED_CLASSES)[result.detail],
        "score": np.round(result.score.astype(np.float64), 4),
        "antagonism": np.round(result.antagonism.astype(np.float64), 4),
        "null_class": np.array(CLASSES)[result.null_label],
        "null_detailed_class": np.array(DETAILED_CLASSES)[result.null_detail],
        **result.columns,
    }
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(columns))
        writer.writerows(zip(*(np.asarray(values).tolist() for values in columns.values())))


# the names analyze gives its per-layer files (see _file_stem): nothing else is ever removed
OWN_OUTPUT = re.compile(
    r"(layers|regular)/[0-9]{3}_[A-Za-z0-9_.-]+\.csv|grids/(regular_)?[0-9]{3}_[A-Za-z0-9_.-]+\.png"
)
MAX_SUMMARY_BYTES = 64 * 2**20


def _earlier_outputs(out: Path) -> list[Path]:
    """The per-layer files an earlier analyze run wrote to ``out``: those its ``summary.json``
    lists under ``files`` and that have analyze's own names; ``[]`` without a readable summary."""
    summary = out / "summary.json"
    try:
        # a regular file, read up to the bound: a device (/dev/zero, /dev/full) reports size 0 and never ends
        if not summary.is_file():
            return []
        with summary.open("rb") as f:
            data = f.read(MAX_SUMMARY_BYTES + 1)
        if len(data) > MAX_SUMMARY_BYTES:
            return []
        files = json.loads(data.decode("utf-8")).get("files") or {}
        listed = [path for key in ("layers", "regular", "grids") for path in (files.get(key) or [])]
    except (OSError, ValueError, AttributeError, TypeError):  # none, unreadable, or not ours
        return []
    return [out / path for path in listed if isinstance(path, str) and OWN_OUTPUT.fullmatch(path)]


def _remove_earlier_outputs(out: Path, keep: set[str] = frozenset({"layers", "regular"})) -> None:
    """Remove the per-layer files an earlier run recorded in ``out/summary.json`` (a different model
    has different layers), never another file, and the ``regular/`` folder they leave empty when
    this run has no regular group (``keep``)."""
    for path in _earlier_outputs(out):
        if path.is_file() or path.is_symlink():
            path.unlink()
    regular = out / "regular"
    if "regular" not in keep and regular.is_dir() and not any(regular.iterdir()):
        regular.rmdir()


def _survey_row(
    label: str, group: str, size: str, entry: dict, folder: str, classifier: KernelClassifier
) -> dict[str, Any]:
    observed, chance, excess = entry["proportions"], entry["chance"], entry["excess"]
    return {
        "subject": label,
        "method": classifier.name,
        "settings": json.dumps(classifier.settings(), sort_keys=True),
        "group": group,
        "kernel_size": size,
        "kernels": entry["kernels"],
        "threshold": round(entry["threshold"], 4),
        **{name: round(observed[name], 4) for name in CLASSES},
        **{f"chance_{name}": round(chance[name], 4) for name in CLASSES},
        "on_off": round(observed["on_center"] + observed["off_center"], 4),
        "chance_on_off": round(chance["on_center"] + chance["off_center"], 4),
        "excess_on_off": round(excess["on_center"] + excess["off_center"], 4),
        "named": round(entry["explained"], 4),
        "chance_named": round(entry["explained_chance"], 4),
        **{f"taxonomy_{name}": round(entry["detailed_proportions"][name], 4) for name in DETAILED_CLASSES},
        **{f"chance_taxonomy_{name}": round(entry["detailed_chance"][name], 4) for name in DETAILED_CLASSES},
        "folder": folder,
    }


def _write_survey(
    out: Path, rows: list[dict[str, Any]], classifier: KernelClassifier, notes: list[str]
) -> None:
    from neural_echos import plots

    out.mkdir(parents=True, exist_ok=True)
    with (out / "survey.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"Classifier: {classifier!r}. Chance: the same classifier on each kernel's pixel-permuted null.",
        "",
        (
            "| subject | group | kernel size | kernels | threshold | on (chance) | off (chance) | excess on+off "
            "| named by the taxonomy (chance) |"
        ),
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['subject']} | {r['group']} | {r['kernel_size']} | {r['kernels']} | {r['threshold']:.2f} | "
            f"{r['on_center']:.1%} ({r['chance_on_center']:.1%}) | {r['off_center']:.1%} "
            f"({r['chance_off_center']:.1%}) | "
            f"{r['excess_on_off']:+.1%} | {r['named']:.1%} ({r['chance_named']:.1%}) |"
        )
    if notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    (out / "survey.md").write_text("\n".join(lines) + "\n")
    plots.save_figure(plots.survey_figure(rows), out / "survey.png")


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:100] or "layer"


def _plot_title(report: KernelReport, source: dict) -> str:
    return f"{source['label']}: {report.classifier}, {report.n_kernels} depthwise kernels"


def describe(group: dict[str, Any]) -> str:
    """One line: kernels, thresholds, and each class with its chance share and excess."""
    observed, chance, excess = group["proportions"], group["chance"], group["excess"]
    parts = [
        f"{name} {observed[name]:.1%} (chance {chance[name]:.1%}, excess {excess[name]:+.1%})"
        for name in ("on_center", "off_center")
    ]
    thresholds = ", ".join(f"{size} {value:.2f}" for size, value in group["thresholds"].items())
    return (
        f"{group['kernels']} {group['group']} kernels in {len(group['layers'])} layers ({group['method']}, "
        f"threshold {thresholds}): {', '.join(parts)}, other {observed['other']:.1%}"
    )


def describe_taxonomy(group: dict[str, Any]) -> str:
    """One line: the taxonomy's shares, each with its chance share, and the share it names."""
    shares, chance = group["detailed_proportions"], group["detailed_chance"]
    parts = [f"{name} {shares[name]:.1%} ({chance[name]:.1%})" for name in DETAILED_CLASSES[2:]]
    return (
        f"  taxonomy (chance): {', '.join(parts)}; named {group['explained']:.1%} "
        f"(chance {group['explained_chance']:.1%})"
    )


# --------------------------------------------------------------------------------------------
# command line


# The shorter spellings analyze had before --classifier.OPTION (kept: scripts and tests use them):
# flag dest -> the classifier's option. A new classifier option needs no entry here.
CLASSIFIER_SHORTHANDS = {
    "threshold": "threshold",
    "alpha": "alpha",
    "null_model": "null_model",
    "null_seed": "null_seed",
    "clusters": "n_clusters",
    "cluster_seed": "seed",
}


def _add_classifier_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(sorted(CLASSIFIERS))
    parser.add_argument(
        "--classifier",
        default=None,
        metavar="NAME_OR_CLASS",
        help=f"kernel classifier: a registered name ({names}; default {DEFAULT_CLASSIFIER}), the class name or "
        "import path of a KernelClassifier subclass, or a JSON/YAML dict {class_path: ..., init_args: {...}}. "
        "Its options, taken from its signature as for `run.py fit --snapshot.classifier`: --classifier.OPTION VALUE "
        "(e.g. --classifier kmeans --classifier.n_clusters 3); `--classifier NAME --classifier.help NAME` lists them",
    )
    parser.add_argument("--method", default=None, help="same as --classifier NAME")
    parser.add_argument(
        "--threshold",
        default=None,
        help='= --classifier.threshold: correlation threshold in (0, 1), or "auto" (default): calibrated per kernel '
        "size on Gaussian noise",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="= --classifier.alpha: for auto, share of noise allowed on/off (default 0.05)",
    )
    parser.add_argument(
        "--null-model",
        default=None,
        help=f"= --classifier.null_model: null model of the chance share: {', '.join(NULL_MODELS)} "
        "(default permute)",
    )
    parser.add_argument(
        "--null-seed",
        type=int,
        default=None,
        help="= --classifier.null_seed: seed of the null kernels (default 0)",
    )
    parser.add_argument(
        "--clusters",
        type=_clusters,
        default=None,
        help='= --classifier.n_clusters (kmeans): k, or "auto" (default): the smallest k from 3 to 12 '
        "that carries every polarity the kernels hold; 3 is the paper's",
    )
    parser.add_argument(
        "--cluster-seed",
        type=int,
        default=None,
        help="= --classifier.seed (kmeans): random_state (default 0)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed of a fresh model's initialisation and of the regular-slice sample (default: 0)",
    )
    parser.add_argument(
        "--include-regular",
        action="store_true",
        help="also classify the slices of the regular kxk convolutions (the control group)",
    )
    parser.add_argument(
        "--max-regular-kernels",
        type=int,
        default=MAX_REGULAR_KERNELS,
        help=f"at most this many regular slices per kernel size, sampled (default {MAX_REGULAR_KERNELS:,})",
    )


def _shapes(layers: list[LayerKernels]) -> list[tuple[str, int, int, int]]:
    return [(layer.name, len(layer), *layer.kernel_size) for layer in layers]


BOUND_OPTIONS = ("max_bytes", "max_file_bytes", "max_memory", "max_layers", "max_kernel_side")


def _add_bound_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-memory",
        type=positive_int,
        default=DEFAULT_MAX_MEMORY,
        help="refuse an analysis estimated (from the shapes, before reading) to need more memory "
        "than this (default: 4 GiB; see neural_echos/budget.py)",
    )
    parser.add_argument(
        "--max-layers",
        type=positive_int,
        default=MAX_LAYERS,
        help=f"refuse more depthwise layers than this (default: {MAX_LAYERS:,}; each writes files)",
    )
    parser.add_argument(
        "--max-kernel-side",
        type=positive_int,
        default=MAX_KERNEL_SIDE,
        help=f"refuse kernels larger than NxN (default: {MAX_KERNEL_SIDE}, RepLKNet's 31x31)",
    )
    parser.add_argument(
        "--max-bytes",
        type=positive_int,
        default=DEFAULT_MAX_BYTES,
        help="refuse more depthwise kernel data than this, checked before reading (default: 256 MiB)",
    )
    parser.add_argument(
        "--max-file-bytes",
        type=positive_int,
        default=DEFAULT_MAX_FILE_BYTES,
        help="refuse reading more than this whole (legacy .pt, or a .safetensors with --model) "
        "(default: 8 GiB)",
    )


def parse_with_classifier(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args`` that also takes ``--classifier.OPTION VALUE`` (or ``--classifier.OPTION=VALUE``)
    pairs, kept in ``args.classifier_options`` for :func:`classifier_from_args`; any other unknown
    argument is argparse's one-line error with its did-you-mean."""
    args, rest = parser.parse_known_args(argv)
    options, unknown = [], []
    while rest:
        token = rest.pop(0)
        if token.startswith("--classifier.") and token != "--classifier.":
            options.append(token)
            if "=" not in token and rest:
                options.append(rest.pop(0))
        else:
            unknown.append(token)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.classifier_options = options
    return args


def classifier_from_args(args: argparse.Namespace) -> KernelClassifier:
    """The classifier the command line asks for, built by jsonargparse from its class's signature
    (like ``run.py fit --snapshot.classifier``), so every option of every registered classifier is
    accepted as ``--classifier.OPTION``; options not set keep their defaults.

    Raises:
        AnalysisError: an unknown classifier or option (with a did-you-mean), or a value of the wrong type.
        Whatever the classifier raises for a bad value (an AnalysisError naming the option).
    """
    if args.classifier is not None and args.method is not None and args.classifier != args.method:
        raise AnalysisError(
            f"--classifier {args.classifier} and --method {args.method} disagree; give one of them"
        )
    name = args.classifier or args.method or DEFAULT_CLASSIFIER
    if args.method is not None and args.method not in CLASSIFIERS:
        raise AnalysisError(f"unknown method {args.method!r}; use one of {', '.join(sorted(CLASSIFIERS))}")
    tokens = ["--classifier", _classifier_class_path(name)]
    for flag, option in CLASSIFIER_SHORTHANDS.items():  # before the --classifier.OPTION pairs, which win
        value = getattr(args, flag, None)
        if value is not None:
            if flag == "threshold" and value != "auto":
                value = _number(value, "--threshold")
            tokens += [f"--classifier.{option}", str(value)]
    options = list(getattr(args, "classifier_options", []))
    for i, token in enumerate(options[:-1]):  # --classifier.help NAME: jsonargparse wants the class
        if token == "--classifier.help":
            options[i + 1] = _classifier_class_path(options[i + 1])
    return build_classifier([*tokens, *options])


def build_classifier(tokens: list[str]) -> KernelClassifier:
    """A :class:`KernelClassifier` from ``--classifier X --classifier.OPTION VALUE ...`` tokens, parsed by
    jsonargparse (``add_subclass_arguments``) and built here, so that the classifier's own errors keep
    their type and message."""
    from jsonargparse import ArgumentParser

    from neural_echos import safe_yaml

    safe_yaml.bound_jsonargparse()  # a YAML dict (or file) given to --classifier is read within the bounds
    parser = ArgumentParser(prog="run.py analyze", exit_on_error=False)
    parser.add_subclass_arguments(KernelClassifier, "classifier", required=True)
    _check_classifier_options(tokens)
    try:
        config = parser.parse_args(tokens)
    except Exception as err:  # noqa: BLE001  (jsonargparse's ArgumentError / ValueError: a wrong type)
        raise AnalysisError(_classifier_parse_message(str(err))) from None
    cls = _import_class(config.classifier.class_path)
    settings = config.classifier.get("init_args")
    return cls(**(settings.as_dict() if settings is not None else {}))


def _classifier_class_path(name: str) -> str:
    """A registry name's class path; anything else (a class name or path, a dict) for jsonargparse."""
    cls = CLASSIFIERS.get(name)
    return f"{cls.__module__}.{cls.__qualname__}" if cls is not None else name


def _classifier_class(value: str) -> type[KernelClassifier]:
    """The class ``--classifier`` names (a registered name, its class name or an imported class path)."""
    by_name = {cls.__name__: cls for cls in CLASSIFIERS.values()}
    by_path = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in CLASSIFIERS.values()}
    cls = CLASSIFIERS.get(value) or by_name.get(value) or by_path.get(value)
    if cls is None and "." in value and not value.lstrip().startswith("{"):
        cls = _import_class(value)
    if cls is None:
        choices = sorted(CLASSIFIERS) + sorted(by_name)
        close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        mean = f"did you mean {close[0]}? " if close else ""
        raise AnalysisError(
            f"--classifier: unknown classifier {value!r}; {mean}choose one of "
            f"{', '.join(sorted(CLASSIFIERS))} (or a KernelClassifier subclass's import path)"
        )
    return cls


def _import_class(class_path: str) -> type[KernelClassifier] | None:
    """The KernelClassifier subclass a class path on the command line names (its module imported, as
    jsonargparse and ``run.py fit --snapshot.classifier`` do), or ``None``."""
    module_name, _, name = class_path.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ImportError:
        module = None
    cls = getattr(module, name, None) if module is not None else None
    if cls is None:  # jsonargparse may shorten the path (neural_echos.classifiers.KMeansClassifier)
        cls = {c.__name__: c for c in CLASSIFIERS.values()}.get(name)
    return cls if isinstance(cls, type) and issubclass(cls, KernelClassifier) else None


def _check_classifier_options(tokens: list[str]) -> None:
    """Every ``--classifier.OPTION`` is a parameter of the chosen class: else one error with a did-you-mean."""
    value = tokens[1]
    if value.lstrip().startswith("{"):
        return  # a dict: jsonargparse checks it
    cls = _classifier_class(value)
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # **kwargs passed on: jsonargparse follows them and checks the options
    accepted = [name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    given = [
        token.removeprefix("--classifier.").split("=", 1)[0]
        for token in tokens[2:]
        if token.startswith("--classifier.")
    ]
    for option in given:
        if option in accepted or option == "help":
            continue
        shorthand = next(
            (f" (--{flag.replace('_', '-')})" for flag, o in CLASSIFIER_SHORTHANDS.items() if o == option), ""
        )
        close = difflib.get_close_matches(option, accepted, n=1, cutoff=0.6)
        mean = f"did you mean --classifier.{close[0]}? " if close else ""
        raise AnalysisError(
            f"classifier {getattr(cls, 'name', cls.__name__)!r} does not take "
            f"--classifier.{option}{shorthand}; {mean}its options: {', '.join(accepted)}"
        )


_NESTED_KEY = re.compile(r'Parser key "(?P<key>\w+)":\s*(?P<rest>[^\n]+)')
_NOT_ACCEPTED = re.compile(r"Option '(?P<key>\w+)' is not accepted")
_NO_CLASS = re.compile(r"Expected a dot import path string: (?P<name>.+)")


def _classifier_parse_message(message: str) -> str:
    """jsonargparse's message for ``--classifier`` lists every Union member it tried; keep what the user got wrong."""
    nested = [found for found in _NESTED_KEY.finditer(message) if found["key"] != "classifier"]
    if nested:
        return f"--classifier.{nested[0]['key']}: {one_line(nested[0]['rest'], 300)}"
    rejected = _NOT_ACCEPTED.search(message)
    if rejected:
        return f"--classifier: option {rejected['key']!r} is not accepted by that classifier"
    unknown = _NO_CLASS.search(message)
    if unknown:
        return (
            f"--classifier: unknown classifier {one_line(unknown['name'], 100)!r}; choose one of "
            f"{', '.join(sorted(CLASSIFIERS))}, a KernelClassifier subclass's import path, or a dict "
            "{class_path: ..., init_args: {...}}"
        )
    return f"--classifier: {one_line(message, 300)}"


def _clusters(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected "auto" or an integer >= 2, got {text!r}') from None


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise AnalysisError(f'{option} must be a number in (0, 1) or "auto"; got {text!r}') from None


@exits_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    """``run.py analyze``; returns 0, or exits with status 2 after ``error: ...`` on stderr."""
    parser = OneLineArgumentParser(
        prog="run.py analyze",
        description="Classify the depthwise kernels of a checkpoint or timm model as on-center, "
        "off-center or other, each with its chance share (Neural Echos, arXiv 2401.10178).",
    )
    parser.add_argument(
        "--checkpoint", help="a Lightning .ckpt, torch .pt/.pth state dict or .safetensors file"
    )
    parser.add_argument("--model", help="timm model name; alone: its seeded random initialisation")
    parser.add_argument("--pretrained", action="store_true", help="with --model: timm's pretrained weights")
    parser.add_argument("--weights", help="with --model: a local copy of the pretrained weights (offline)")
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: analysis_out, or analysis_out-2, -3, ... when it "
        "holds an earlier analysis); a given --out that holds one is updated in place",
    )
    parser.add_argument("--layers", help="regular expression selecting depthwise layers by name")
    parser.add_argument(
        "--max-kernels", type=int, default=MAX_KERNELS_DRAWN, help="kernels per grid image (default: 64)"
    )
    _add_classifier_arguments(parser)
    _add_bound_arguments(parser)
    args = parse_with_classifier(parser, argv)
    replaced = args.out is not None and (Path(args.out) / "summary.json").is_file()
    args.out = args.out if args.out is not None else str(free_output_folder(Path("analysis_out")))

    classifier = classifier_from_args(args)  # first: --classifier.help prints the options and exits
    subject = Subject(
        checkpoint=None if args.checkpoint is None else Path(args.checkpoint),
        model=args.model,
        pretrained=args.pretrained,
        weights=None if args.weights is None else Path(args.weights),
    )
    summary = analyze(
        subject,
        classifier,
        args.out,
        args.layers,
        args.max_kernels,
        args.include_regular,
        args.max_regular_kernels,
        args.seed,
        args.max_bytes,
        args.max_file_bytes,
        args.max_memory,
        args.max_layers,
        args.max_kernel_side,
    )
    for group in (summary, summary.get("regular")):
        if group is not None:
            print(describe(group))
            print(describe_taxonomy(group))
            for note in group["notes"]:
                print(f"  note: {note}")
    pictures = ["grids/*.png", "proportions.png", "taxonomy.png"]
    pictures += ["centroids.png"] if "centroids" in summary["files"] else []
    print(
        f"wrote {Path(args.out) / 'summary.json'}, per-layer CSVs (layers/*.csv) and the pictures "
        f"{', '.join(pictures)} ({summary['seconds']:.1f} s)"
        + (f"; it replaced the earlier analysis in {args.out}" if replaced else "")
    )
    return 0


def free_output_folder(default: Path) -> Path:
    """``default``, or ``default-2``, ``-3``, ... when it holds an earlier analysis (its summary.json):
    an analyze without ``--out`` never replaces an earlier one."""
    candidate, n = default, 1
    while (candidate / "summary.json").exists():
        n += 1
        candidate = default.with_name(f"{default.name}-{n}")
    return candidate


@exits_on_user_error
def survey_main(argv: Sequence[str] | None = None) -> int:
    """``run.py survey``; returns 0, or exits with status 2 after ``error: ...`` on stderr."""
    parser = OneLineArgumentParser(
        prog="run.py survey",
        description="Compare the kernels of several models and checkpoints in one table: on-center, "
        "off-center and other shares with their chance shares, depthwise (and regular) convolutions.",
    )
    parser.add_argument("--model", action="append", default=[], help="timm model, random init (repeatable)")
    parser.add_argument(
        "--pretrained", action="append", default=[], help="timm model with pretrained weights (repeatable)"
    )
    parser.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="local pretrained weights for a --pretrained NAME (repeatable)",
    )
    parser.add_argument("--checkpoint", action="append", default=[], help="checkpoint file (repeatable)")
    parser.add_argument("--out", default="survey_out", help="output folder (default: survey_out)")
    _add_classifier_arguments(parser)
    _add_bound_arguments(parser)  # each subject is analysed within the same bounds as `analyze`
    args = parse_with_classifier(parser, argv)

    classifier = classifier_from_args(args)  # first: --classifier.help prints the options and exits
    weights = dict(_name_and_file(item) for item in args.weights)
    unused = set(weights) - set(args.pretrained)
    if unused:
        raise AnalysisError(f"--weights given for {sorted(unused)}, which no --pretrained names")
    subjects = [Subject(model=name) for name in args.model]
    subjects += [Subject(model=name, pretrained=True, weights=weights.get(name)) for name in args.pretrained]
    subjects += [Subject(checkpoint=Path(path)) for path in args.checkpoint]
    bounds = {name: getattr(args, name) for name in BOUND_OPTIONS}
    rows = survey(
        subjects, classifier, args.out, args.include_regular, args.max_regular_kernels, args.seed, bounds
    )
    print((Path(args.out) / "survey.md").read_text(), end="")
    print(f"wrote {Path(args.out) / 'survey.csv'}, survey.md and survey.png ({len(rows)} rows)")
    return 0


def _name_and_file(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise AnalysisError(
            f"--weights takes NAME=FILE (e.g. convnext_tiny=convnext_tiny.safetensors); got {item!r}"
        )
    return name, Path(path)


__all__ = [
    "AnalysisError",
    "CheckpointError",
    "Subject",
    "analyze",
    "collect_subject",
    "create_model",
    "describe",
    "load_into_model",
    "main",
    "survey",
    "survey_main",
]
