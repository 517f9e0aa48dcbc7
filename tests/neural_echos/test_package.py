"""The package layout: the kernel maths needs no Lightning, and no generic top-level import name
(``models``, ``tools``, ``plugins``, ``cli``) is ours to shadow or be shadowed by."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import neural_echos

REPO = Path(__file__).resolve().parents[2]
LIGHTNING_PARTS = ("cli", "tools")  # the sub-packages that use Lightning (and may read its files)


def test_the_kernel_maths_imports_no_lightning():
    modules = [
        info.name
        for info in pkgutil.walk_packages(neural_echos.__path__, "neural_echos.")
        if info.name.split(".")[1] not in LIGHTNING_PARTS
    ]
    assert "neural_echos.taxonomy" in modules and "neural_echos.models.build" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_no_generic_top_level_import_names():
    generic = {"models", "tools", "plugins", "cli", "cli_configs", "utils", "data"}
    ours = {p.stem for p in REPO.glob("*.py")} | {
        p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()
    }
    assert not ours & generic, (
        f"top-level import names that collide with other packages: {sorted(ours & generic)}"
    )
