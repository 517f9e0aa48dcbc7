"""Initialising the depthwise convolutions of any model: one class per method, in a registry.

A method rewrites, in place, the weights of every depthwise convolution of an ``nn.Module`` (as
found by :func:`neural_echos.depthwise.find_depthwise_convs`: timm, torchvision or our own
models; weight shape ``[C * m, 1, kh, kw]`` with channel multiplier m, one kernel per output
channel) and returns an :class:`InitSummary` of what it changed. Biases are left alone.

========================  ===========================================  ==============================================
registry name             class (module in this package)               what
========================  ===========================================  ==============================================
``dog``                   ``DoGInit`` (``dog``)                        Difference-of-Gaussians center-surround
                                                                       kernels, the init of "Neural Echos"
``kaiming_normal``        ``KaimingNormalInit`` (``kaiming``)          N(0, 2 / fan_in): the paper's baseline
``kaiming_uniform``       ``KaimingUniformInit`` (``kaiming``)         U(-b, b), b = sqrt(6 / fan_in)
``torch_default``         ``TorchDefaultInit`` (``torch_default``)     PyTorch's conv default, kaiming_uniform with
                                                                       a = sqrt(5): std 1 / sqrt(3 k^2)
``gaussian_covariance``   ``GaussianCovarianceInit``                   N(0, Sigma), Sigma a closed-form Gaussian
                          (``gaussian_covariance``)                    covariance after Trockman et al. (ours: see
                                                                       its caveat)
``covariance_transfer``   ``CovarianceTransferInit``                   N(0, Sigma), Sigma the covariance of a
                          (``covariance_transfer``)                    checkpoint's depthwise filters
``impulse``               ``ImpulseInit`` (``impulse``)                one-hot kernels at random positions (Zheng,
                                                                       Li & Lucey, arXiv 2401.12511): a control
``master_key``            ``MasterKeyInit`` (``master_key``)           each kernel one of the 8 master key
                                                                       filters (arXiv 2412.16751): a control
========================  ===========================================  ==============================================

``none`` (keep the model's own init) is no method: the callback's ``method: null``. Frozen
depthwise weights (with any method or none) are the callback's ``freeze: true``
(docs/controls.md).

Use a method directly, or by name::

    from neural_echos.init.dog import DoGInit
    DoGInit(gamma_range=(0.0, 0.5)).initialize(model, seed=0)
    initialize_depthwise(model, "dog", gamma_range=(0.0, 0.5), seed=0)

Adding a method is one file in this package (it is imported here automatically): a subclass of
:class:`InitMethod` with ``name="..."``, a typed constructor taking its own options only (they
become its ``init.method.init_args`` in the configs and ``--help``), :meth:`InitMethod.settings`
(what is logged) and :meth:`InitMethod.init_layers`; then a ``configs/init/<name>.yaml`` and a
test (``tests/neural_echos/init/test_<name>.py``, as for ``torch_default`` and
``covariance_transfer``).

Speed: DoG makes all kernels of a size in one vectorised call (:func:`neural_echos.dog.dog_kernels`)
and the per-layer statistics in a few batched ops; every method runs on one CPU thread
(:func:`neural_echos.threads.single_thread`). DoG init of timm convnext_tiny (6,624 kernels)
takes a few ms; see ``benchmarks/bench_dog_init.py``.

Randomness: everything comes from a private ``torch.Generator`` seeded with ``seed`` (the global
RNG is neither used nor advanced) and is drawn on the CPU in module order, so the same seed and
model give the same weights on every DDP rank and every device.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from torch import nn

from neural_echos.errors import ConfigError
from neural_echos.init.base import KAIMING_GAIN, REGISTRY, DepthwiseLayer, InitMethod, InitSummary, LayerInit

# Every module of this package defines (and so registers) methods: import them all, so that a
# new method is one new file (no line here; import its class from its module).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def init_methods() -> dict[str, type[InitMethod]]:
    """Registry name -> class, sorted by name."""
    return dict(sorted(REGISTRY.items()))


def method_name(class_path: str) -> str | None:
    """The registry name of a class given as ``DoGInit`` or ``neural_echos.init.dog.DoGInit``
    (as config files write it); None for no registered class."""
    for name, cls in REGISTRY.items():
        if class_path in (cls.__name__, f"{cls.__module__}.{cls.__qualname__}"):
            return name
    return None


def create_init(method: str, **options: Any) -> InitMethod:
    """The method registered as ``method``, constructed with ``options`` (errors say what to fix)."""
    if method not in REGISTRY:
        raise ConfigError(
            f"unknown depthwise init method {method!r}; choose one of {', '.join(init_methods())} "
            "(or no init method to keep the model's own)"
        )
    cls = REGISTRY[method]
    accepted = [name for name in inspect.signature(cls).parameters if name not in ("self", "args", "kwargs")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"the options {', '.join(accepted)}" if accepted else "no options"
        raise ConfigError(f"init method {method!r} takes {takes}; got unknown {unknown}")
    return cls(**options)


def initialize_depthwise(
    model: nn.Module,
    method: str | InitMethod = "dog",
    *,
    seed: int = 0,
    name_filter: str | None = None,
    model_name: str | None = None,
    **options: Any,
) -> InitSummary:
    """Initialise every depthwise conv of ``model`` in place and return what was changed.

    ``method`` is a registry name (with the method's ``options``, see its class) or a method
    instance; ``seed``, ``name_filter`` and ``model_name`` as :meth:`InitMethod.initialize`.

    Raises:
        ConfigError (a ValueError): for any invalid setting, with what is wrong and what to do.
        NoDepthwiseLayersError: the model has no depthwise layer, or the filter matches none.
    """
    if isinstance(method, InitMethod):
        if options:
            raise ConfigError(
                f"give the options of {method!r} to its constructor, not to initialize_depthwise"
            )
    else:
        method = create_init(method, **options)
    return method.initialize(model, seed=seed, name_filter=name_filter, model_name=model_name)


__all__ = [
    "KAIMING_GAIN",
    "DepthwiseLayer",
    "InitMethod",
    "InitSummary",
    "LayerInit",
    "create_init",
    "init_methods",
    "initialize_depthwise",
    "method_name",
]
