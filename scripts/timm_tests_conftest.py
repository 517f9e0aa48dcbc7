"""Appended to the conftest.py of timm's source-package tests by scripts/timm_model_tests.sh.

Imports this project's ``models`` package before collection (so timm's registry holds our
models when ``tests/test_models.py`` parametrises over ``list_models()``), keeps only the test
cases whose ``model_name`` is one of our models, and, unless NEURAL_ECHOS_ONLINE=1, puts
synthetic checkpoints in the official HorNet layout where timm's download cache would hold the
official files (TORCH_HOME is a scratch folder set by the script), so the pretrained-loading
tests run offline through the real url -> cache -> custom_load -> checkpoint_filter_fn path.
"""

import importlib.util as _importlib_util
import os as _os
import sys as _sys
from pathlib import Path as _Path

_REPO = _Path(_os.environ["NEURAL_ECHOS_REPO"])
_sys.path.insert(0, str(_REPO))

import timm as _timm

import neural_echos.models as _our_models  # noqa: F401  (registers our models with timm's registry)

OUR_MODELS = sorted(
    name
    for name in _timm.list_models()
    if _timm.models.model_entrypoint(name).__module__.startswith("neural_echos.models.")
)


def _seed_official_layout_cache() -> None:
    import torch

    path = _REPO / "tests" / "models" / "official_hornet.py"
    spec = _importlib_util.spec_from_file_location("official_hornet", path)
    official = _importlib_util.module_from_spec(spec)
    spec.loader.exec_module(official)
    cache = _Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    for name in OUR_MODELS:
        url = _timm.models.get_pretrained_cfg(name).url
        if not isinstance(url, tuple):
            continue
        path = cache / url[1]
        if not path.exists():
            official.write_official_checkpoint(path, official.random_official_state_dict(name))
        print(f"[neural-echos] {name}: synthetic official-layout checkpoint at {path}")


def pytest_configure(config):
    where = _Path(_timm.__file__).parent
    print(f"[neural-echos] timm {_timm.__version__} from {where}; our models: {OUR_MODELS}")
    if _os.environ.get("NEURAL_ECHOS_ONLINE") != "1":
        _seed_official_layout_cache()


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        name = str(params.get("model_name", "")).split(".")[0]
        (keep if name in OUR_MODELS else drop).append(item)
    items[:] = keep
    if drop:
        config.hook.pytest_deselected(items=drop)
