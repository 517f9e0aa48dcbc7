"""Collect depthwise kernels from a model or straight from a checkpoint file (no model code).

From a module, depthwise layers are the ones :func:`neural_echos.depthwise.find_depthwise_convs`
finds. From a file, a depthwise kernel is any floating-point 4-D tensor of shape ``[C, 1, kh, kw]``
with ``C > 1`` and ``max(kh, kw) > 1`` (a convolution with one input channel per filter).
A file cannot tell a depthwise convolution from an ordinary one on a one-channel input (e.g. the
stem of a grayscale model, ``[64, 1, 3, 3]``); select layers with ``name_filter`` if that matters.

Supported files:

- PyTorch files written by ``torch.save`` (``.pt``, ``.pth``, ``.bin``, Lightning ``.ckpt``):
  a plain state dict, or one nested under ``state_dict`` (Lightning), ``model``,
  ``model_state_dict``, ``state_dict_ema`` or ``module`` (the first of those keys that holds
  tensors wins; optimizer states are never read, since their moment tensors have the same shapes
  as the weights).
- ``.safetensors`` files. They keep no tensor order, so layers are ordered by name with numbers
  compared as numbers (``blocks.2`` before ``blocks.10``), which is module order for timm models.

Loading is safe and fast: ``torch.load(weights_only=True, mmap=True)`` first (only the kernel
tensors are then read from disk). A Lightning checkpoint whose hyper-parameters hold arbitrary
Python objects is refused by that loader; it is then read with a restricted unpickler that
builds tensors with torch's own allow-list and replaces every other class or function in the
file by an inert placeholder, so no code from the file runs. ``Checkpoint.loader`` says which
loader was used. TorchScript archives (``torch.jit.save``) are refused by content before any load
(:func:`is_torchscript_archive`): ``torch.load`` would hand them to ``torch.jit.load``, which runs
the archive's scripted code; both loads also run with ``torch.jit.load`` disabled.

Bounds, checked before any tensor data is read (a small or sparse file may declare huge
tensors: one 4 KB ``.safetensors`` declaring a [60M, 1, 3, 3] kernel once took 21.6 GB of RAM):

- ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, 256 MiB): the depthwise kernel data read,
  summed over the declared shapes and dtypes. The analysis took 6x (7x7 kernels) to 10.5x (3x3)
  that in RAM (measured on the 2-core CI machine); timm's convnext_xxlarge, the largest model
  checked, holds 11.1 MiB of depthwise kernels.
- ``max_file_bytes`` (default :data:`DEFAULT_MAX_FILE_BYTES`, 8 GiB): data read whole, i.e. a
  file in torch's legacy (non-zip) format, which torch reads entirely, or every tensor of a
  ``.safetensors`` file when the whole state dict is read (``analyze --model ... --checkpoint``).
  Zip-format torch files (every ``torch.save`` since 1.6) are memory-mapped, so only what is
  used is read.

The cost of the analysis itself (per kernel size and per layer, not per byte) is bounded by
:mod:`neural_echos.budget`, checked by :func:`kernels_from_state_dict` when given a ``budget``.

Kernels with NaN or infinite entries are an :class:`AnalysisError` naming each such layer and
how many of its kernels are affected (select the finite layers with ``name_filter``). Sparse and
meta tensors are a :class:`CheckpointError` naming the layer; depthwise-shaped tensors of an
integer or bool dtype are named with their dtype in the "no depthwise kernel" error.

Layer names are the state-dict keys (or module names) without the ``.weight`` suffix and without
wrapper prefixes shared by every kernel (``model.`` of our Lightning module, ``module.`` of
DataParallel, ``_orig_mod.`` of torch.compile), so a Lightning checkpoint and the timm model it
wraps give the same names (``stages.0.blocks.0.conv_dw``). ``LayerKernels.key`` keeps the full key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neural_echos.checkpoints import (
    DEFAULT_MAX_FILE_BYTES,
    CheckpointError,
    Placeholder,
    Reader,
    check_file,
    check_size,
    is_torchscript_archive,
    load_torch_file,
    no_torchscript,
    torchscript_message,
)
from neural_echos.depthwise import find_depthwise_convs, select_by_name
from neural_echos.dog import dog_fits
from neural_echos.errors import AnalysisError, one_line

DEFAULT_MAX_BYTES = 256 * 2**20
NESTED_STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "module")
WRAPPER_PREFIXES = ("model.", "module.", "_orig_mod.")


# analyze --checkpoint, survey --checkpoint and the covariance-transfer init
CHECKPOINT = Reader(
    what="checkpoint", error=CheckpointError, accepts="a .ckpt, .pt, .pth or .safetensors file"
)


@dataclass
class LayerKernels:
    """The kernels of one depthwise layer.

    Attributes:
        name: readable layer name, e.g. ``stages.0.blocks.0.conv_dw``.
        key: the full state-dict key (``model.stages.0.blocks.0.conv_dw.weight``) or, for a
            module, the qualified module name plus ``.weight``.
        kernels: ``[C * multiplier, kh, kw]`` float32 on the CPU, detached, in channel order.
    """

    name: str
    key: str
    kernels: Tensor

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.kernels.shape[1]), int(self.kernels.shape[2])

    def __len__(self) -> int:
        return int(self.kernels.shape[0])


@dataclass
class Checkpoint:
    """A state dict read from a file.

    Attributes:
        path: the file.
        state_dict: name -> tensor (for ``only_depthwise=True`` reads, only the depthwise kernels).
        format: ``"lightning"`` (has ``state_dict`` and ``pytorch-lightning_version`` or
            ``epoch``), ``"torch"`` (any other torch.save file) or ``"safetensors"``.
        nested_key: the key the state dict was found under (``None`` for a plain state dict).
        loader: ``"weights_only"``, ``"restricted_unpickler"`` or ``"safetensors"``.
        hyper_parameters: a Lightning checkpoint's ``hyper_parameters`` (plain values only:
            objects the restricted unpickler replaced are dropped), else ``{}``.
    """

    path: Path
    state_dict: dict[str, Tensor]
    format: str
    nested_key: str | None
    loader: str
    hyper_parameters: dict[str, Any] = field(default_factory=dict)


def is_depthwise_kernel(tensor: Any) -> bool:
    """True for a floating-point tensor of shape ``[C, 1, kh, kw]``, ``C > 1``, ``max(kh, kw) > 1``."""
    return (
        isinstance(tensor, Tensor)
        and tensor.dtype.is_floating_point
        and tensor.dim() == 4
        and tensor.shape[0] > 1
        and tensor.shape[1] == 1
        and max(tensor.shape[2], tensor.shape[3]) > 1
    )


def kernels_from_module(
    model: nn.Module,
    name_filter: str | None = None,
    model_name: str | None = None,
    filter_option: str = "--layers",
) -> list[LayerKernels]:
    """Depthwise kernels of ``model`` in module order (cheap: one small copy per layer).

    Names are module names relative to ``model``: pass the timm model (``pl_module.model``) to
    get the same names as :func:`kernels_from_checkpoint` gives for our Lightning checkpoints.

    Raises:
        NoDepthwiseLayersError: no depthwise convolution (or none matching ``name_filter``).
    """
    layers = []
    for name, conv in find_depthwise_convs(model, name_filter, model_name, filter_option):
        weight = conv.weight.detach()
        kernels = weight.to(device="cpu", dtype=torch.float32, copy=True).reshape(-1, *weight.shape[2:])
        layers.append(LayerKernels(name=name, key=f"{name}.weight", kernels=kernels))
    check_finite(layers, f"model {model_name!r}" if model_name else "the model")
    return layers


def kernels_from_state_dict(
    state_dict: Mapping[str, Any],
    name_filter: str | None = None,
    source: str = "the state dict",
    max_bytes: int = DEFAULT_MAX_BYTES,
    budget: Mapping[str, int] | None = None,
    filter_option: str = "--layers",
) -> list[LayerKernels]:
    """Depthwise kernels (see :func:`is_depthwise_kernel`) of a state dict, in its key order.

    ``name_filter`` is a regular expression searched in the readable layer name.
    ``source`` only names the input in error messages, ``filter_option`` the option that set
    ``name_filter``. ``budget``: keyword arguments of :func:`neural_echos.budget.check_budget`
    (``max_memory``, ``max_layers``, ``max_kernel_side``), checked on the selected layers before
    their kernels are copied; ``None``: no budget check.

    Raises:
        CheckpointError: no depthwise kernel, none matching ``name_filter``, or more than
            ``max_bytes`` of kernel data (checked before the kernels are copied).
        BudgetError: the selected layers are beyond the budget.
        AnalysisError: a selected layer holds NaN or infinite values.
    """
    keys = [key for key, value in state_dict.items() if is_depthwise_kernel(value)]
    if not keys:
        raise _no_depthwise_error(
            source, len(state_dict), _first_shapes(state_dict.items()), _non_float_kernels(state_dict.items())
        )
    check_size(
        sum(state_dict[key].numel() * state_dict[key].element_size() for key in keys),
        max_bytes,
        "--max-bytes",
        f"the {len(keys)} depthwise kernels of {source}",
    )
    selected = select_by_name(
        list(zip(readable_names(keys), keys)),
        name_filter,
        f"the {len(keys)} depthwise layers of {source}",
        option=filter_option,
    )
    if budget is not None:
        from neural_echos.budget import check_budget

        shapes = [(name, state_dict[key].shape) for name, key in selected]
        check_budget([(name, int(s[0]), int(s[2]), int(s[3])) for name, s in shapes], source, **budget)
    for name, key in selected:
        _check_dense(name, state_dict[key], source)
    layers = []
    for name, key in selected:
        weight = state_dict[key].detach()  # nn.Parameter values (a saved dict(model.named_parameters()))
        # [C, 1, kh, kw] -> [C, kh, kw]
        kernels = weight.to(torch.float32, copy=True).reshape(-1, *weight.shape[2:])
        layers.append(LayerKernels(name, key, kernels))
    check_finite(layers, source)
    return layers


def is_regular_kernel(tensor: Any) -> bool:
    """True for a floating-point ``[O, I, kh, kw]`` tensor with ``I > 1`` whose ``kh x kw`` window
    fits a DoG (3x3 and larger, 1x3...; not 2x2, where every pixel is at the same distance from
    the centre, like ConvNeXt's downsampling convolutions).

    From a file, a grouped convolution with more than one input channel per group looks the same
    as a regular one; from a module, :func:`regular_kernels_from_module` takes ``groups == 1`` only.
    """
    return (
        isinstance(tensor, Tensor)
        and tensor.dtype.is_floating_point
        and tensor.dim() == 4
        and tensor.shape[1] > 1
        and dog_fits((int(tensor.shape[2]), int(tensor.shape[3])))
    )


def regular_kernels_from_module(model: nn.Module) -> list[LayerKernels]:
    """Every 2-D slice ``weight[o, i]`` of the regular convolutions (``groups == 1``, a window that
    fits a DoG, see :func:`is_regular_kernel`) of ``model``, one layer per convolution, in module
    order: the control group
    of the paper's claim that center-surround kernels appear in depthwise convolutions only.
    Slices are ordered output channel first. Empty when the model has none."""
    layers = []
    for name, conv in model.named_modules():
        if not (isinstance(conv, nn.Conv2d) and conv.groups == 1 and dog_fits(tuple(conv.kernel_size))):
            continue
        weight = conv.weight.detach()
        kernels = weight.to(device="cpu", dtype=torch.float32, copy=True).reshape(-1, *weight.shape[2:])
        layers.append(LayerKernels(name=name, key=f"{name}.weight", kernels=kernels))
    return layers


def regular_kernels_from_state_dict(state_dict: Mapping[str, Any]) -> list[LayerKernels]:
    """The slices of every regular-looking kernel (:func:`is_regular_kernel`) of a state dict."""
    keys = [key for key, value in state_dict.items() if is_regular_kernel(value)]
    layers = []
    for name, key in zip(readable_names(keys), keys):
        _check_dense(name, state_dict[key], "the regular convolutions")
        weight = state_dict[key].detach()
        layers.append(
            LayerKernels(name, key, weight.to(torch.float32, copy=True).reshape(-1, *weight.shape[2:]))
        )
    return layers


def check_finite(layers: list[LayerKernels], source: str) -> None:
    """Raise :class:`AnalysisError` naming every layer whose kernels hold NaN or inf.

    k-means and the template correlations would otherwise fail deep in scikit-learn or give
    meaningless classes.
    """
    bad = []
    for layer in layers:
        finite = torch.isfinite(layer.kernels).flatten(1).all(dim=1)
        if not bool(finite.all()):
            bad.append(f"{layer.name} ({int((~finite).sum())} of {len(layer)} kernels)")
    if bad:
        shown = ", ".join(bad[:8]) + (f", and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise AnalysisError(
            f"{len(bad)} of the {len(layers)} depthwise layers of {source} hold NaN or infinite values: {shown}. "
            "The weights diverged: analyse an earlier checkpoint, or leave these layers out with --layers"
        )


def kernels_from_checkpoint(
    path: str | Path,
    name_filter: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> list[LayerKernels]:
    """Depthwise kernels read straight from a checkpoint file, with no model code."""
    checkpoint = read_checkpoint(
        path, only_depthwise=True, max_bytes=max_bytes, max_file_bytes=max_file_bytes
    )
    return kernels_from_state_dict(
        checkpoint.state_dict, name_filter, source=f"checkpoint {str(path)!r}", max_bytes=max_bytes
    )


def read_checkpoint(
    path: str | Path,
    only_depthwise: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Checkpoint:
    """Read the state dict of a torch, Lightning or safetensors file onto the CPU.

    ``only_depthwise=True`` keeps only the depthwise kernels (and, for safetensors, reads no other
    tensor from disk); then it is an error if there is none. ``max_bytes`` and
    ``max_file_bytes``: see the module docstring.

    Raises:
        CheckpointError: the file is missing, not a checkpoint, corrupt or truncated, holds no
            state dict (or, with ``only_depthwise``, no depthwise kernel), or is beyond a bound.
    """
    path = check_file(
        path, CHECKPOINT
    )  # the checks every checkpoint reader shares (neural_echos.checkpoints)
    if path.suffix == ".safetensors":
        return _read_safetensors(path, only_depthwise, max_bytes, max_file_bytes)

    obj, loader = load_torch_file(path, CHECKPOINT, restricted_fallback=True, max_file_bytes=max_file_bytes)
    state_dict, nested_key = _find_state_dict(obj, path)
    if only_depthwise:
        kernels = {k: v for k, v in state_dict.items() if is_depthwise_kernel(v)}
        if not kernels:
            raise _no_depthwise_error(
                f"checkpoint {str(path)!r}",
                len(state_dict),
                _first_shapes(state_dict.items()),
                _non_float_kernels(state_dict.items()),
            )
        # memory-mapped (zip format): nothing of these was read yet
        check_size(
            sum(v.numel() * v.element_size() for v in kernels.values()),
            max_bytes,
            "--max-bytes",
            f"the {len(kernels)} depthwise kernels of {str(path)!r}",
        )
        state_dict = kernels
    is_lightning = nested_key == "state_dict" and ("pytorch-lightning_version" in obj or "epoch" in obj)
    hparams = _plain_mapping(obj.get("hyper_parameters")) if is_lightning else {}
    return Checkpoint(path, state_dict, "lightning" if is_lightning else "torch", nested_key, loader, hparams)


def readable_names(keys: list[str]) -> list[str]:
    """Keys without ``.weight`` and without the wrapper prefixes that every key shares."""
    names = [key.removesuffix(".weight") for key in keys]
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if names and all(name.startswith(prefix) and len(name) > len(prefix) for name in names):
                names = [name[len(prefix) :] for name in names]
                stripped = True
    return names


def natural_key(name: str) -> list[Any]:
    """Sort key comparing digit runs as numbers: ``blocks.2`` < ``blocks.10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


SAFETENSORS_ITEM_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


def _read_safetensors(path: Path, only_depthwise: bool, max_bytes: int, max_file_bytes: int) -> Checkpoint:
    from safetensors import safe_open

    state_dict = {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = sorted(f.keys(), key=natural_key)
            # the header's shapes and dtypes: every size is known before any data is read
            header = {key: f.get_slice(key) for key in keys}
            shapes = {key: list(header[key].get_shape()) for key in keys}
            sizes = {
                key: math.prod(shapes[key]) * SAFETENSORS_ITEM_BYTES.get(header[key].get_dtype(), 8)
                for key in keys
            }
            if only_depthwise:
                keys = [
                    k
                    for k in keys
                    if len(shapes[k]) == 4
                    and shapes[k][0] > 1
                    and shapes[k][1] == 1
                    and max(shapes[k][2:]) > 1
                    and header[k].get_dtype().startswith(("F", "BF"))
                ]
                if not keys:
                    non_float = [
                        (k, header[k].get_dtype())
                        for k, shape in shapes.items()
                        if len(shape) == 4 and shape[0] > 1 and shape[1] == 1 and max(shape[2:]) > 1
                    ]
                    raise _no_depthwise_error(
                        f"checkpoint {str(path)!r}",
                        len(shapes),
                        [(k, tuple(v)) for k, v in shapes.items()],
                        non_float,
                    )
                check_size(
                    sum(sizes[k] for k in keys),
                    max_bytes,
                    "--max-bytes",
                    f"the {len(keys)} depthwise kernels of {str(path)!r}",
                )
            else:
                check_size(
                    sum(sizes.values()), max_file_bytes, "--max-file-bytes", f"the tensors of {str(path)!r}"
                )
            for key in keys:
                state_dict[key] = f.get_tensor(key)
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise CheckpointError(
            f"cannot read safetensors file {str(path)!r} ({one_line(err, 240)}); it may be truncated or not a "
            "safetensors file: re-save it with safetensors.torch.save_file"
        ) from err
    if only_depthwise:
        state_dict = {k: v for k, v in state_dict.items() if is_depthwise_kernel(v)}
    return Checkpoint(path, state_dict, "safetensors", None, "safetensors")


def _first_shapes(items: Any) -> list[tuple[str, tuple]]:
    return [(str(k), tuple(v.shape)) for k, v in items if isinstance(v, Tensor)][:3]


def _non_float_kernels(items: Any) -> list[tuple[str, str]]:
    """``(key, dtype)`` of the ``[C, 1, kh, kw]`` tensors that are not floating point."""
    return [
        (str(k), str(v.dtype).removeprefix("torch."))
        for k, v in items
        if isinstance(v, Tensor)
        and not v.dtype.is_floating_point
        and v.dim() == 4
        and v.shape[0] > 1
        and v.shape[1] == 1
        and max(v.shape[2], v.shape[3]) > 1
    ]


def _check_dense(name: str, tensor: Tensor, source: str) -> None:
    """A sparse or meta tensor (no values) is one error naming the layer, not a traceback later."""
    if tensor.layout != torch.strided or tensor.is_meta:
        what = (
            "a meta tensor (a shape without values)"
            if tensor.is_meta
            else f"a sparse tensor ({tensor.layout})"
        )
        raise CheckpointError(
            f"layer {name} of {source} is {what}, not a dense kernel; save the model's dense weights "
            "(tensor.to_dense(), or the state dict of a model whose weights were loaded) and pass that file"
        )


def _no_depthwise_error(
    source: str,
    n_entries: int,
    shapes: list[tuple[str, tuple]],
    non_float: list[tuple[str, str]] | None = None,
) -> CheckpointError:
    if non_float:
        dtypes = sorted({dtype for _, dtype in non_float})
        shown = ", ".join(f"{k} ({dtype})" for k, dtype in non_float[:3])
        return CheckpointError(
            f"{source} holds {len(non_float)} tensors of depthwise shape [C, 1, k, k] but of dtype {', '.join(dtypes)} "
            f"(e.g. {shown}), not floating point: a quantized or converted checkpoint, whose values "
            "are not the kernels. "
            "Pass the float checkpoint, or dequantize the weights (e.g. tensor.float() * scale) and save those"
        )
    first = ", ".join(f"{k} {tuple(shape)}" for k, shape in shapes[:3])
    return CheckpointError(
        f"{source} holds no depthwise kernel (a 4-D tensor of shape [C, 1, k, k] with k > 1) among "
        f"its {n_entries} entries (first tensors: {first or 'none'}). "
        "Pass a checkpoint of a depthwise model (ConvNeXt, ConvMixer, MobileNet, EfficientNet)."
    )


def refuse_torchscript(path: str | Path, what: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` if ``path`` is a TorchScript archive
    (:func:`neural_echos.checkpoints.is_torchscript_archive`)."""
    if is_torchscript_archive(path):
        raise CheckpointError(torchscript_message(path, what))


def _find_state_dict(obj: Any, path: Path) -> tuple[dict[str, Tensor], str | None]:
    if isinstance(obj, nn.Module):  # a pickled whole model (restricted loads never give one)
        return dict(obj.state_dict()), None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {type(obj).__name__}, not a state dict; save "
            "model.state_dict() (or a dict with it under 'state_dict' or 'model')"
        )
    if _tensors(obj):
        return _tensors(obj), None
    for key in NESTED_STATE_DICT_KEYS:
        nested = obj.get(key)
        if isinstance(nested, nn.Module):
            return dict(nested.state_dict()), key
        if isinstance(nested, Mapping) and _tensors(nested):
            return _tensors(nested), key
    raise CheckpointError(
        f"checkpoint {str(path)!r} holds no state dict: no tensors at the top level nor under any of "
        f"{list(NESTED_STATE_DICT_KEYS)} (its keys: {list(obj)[:8]}). Save model.state_dict() instead."
    )


def _plain_mapping(value: Any) -> dict[str, Any]:
    """A hyper-parameter mapping with the restricted unpickler's placeholders removed."""
    if isinstance(value, Placeholder):  # a dict subclass (Lightning's AttributeDict) replaced
        value = value.__dict__.get("items", {})
    if not isinstance(value, Mapping):
        return {}
    plain = (str, int, float, bool, type(None), list, tuple, dict)
    return {str(k): v for k, v in value.items() if isinstance(v, plain)}


def _tensors(mapping: Mapping) -> dict[str, Tensor]:
    return {str(k): v for k, v in mapping.items() if isinstance(v, Tensor)}


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FILE_BYTES",
    "AnalysisError",
    "Checkpoint",
    "CheckpointError",
    "LayerKernels",
    "check_finite",
    "is_depthwise_kernel",
    "is_regular_kernel",
    "is_torchscript_archive",
    "kernels_from_checkpoint",
    "kernels_from_module",
    "kernels_from_state_dict",
    "natural_key",
    "no_torchscript",
    "read_checkpoint",
    "readable_names",
    "refuse_torchscript",
    "regular_kernels_from_module",
    "regular_kernels_from_state_dict",
]
