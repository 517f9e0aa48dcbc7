"""neural_echos.logged_names: one torch-free home for every logged name, agreeing with the classifiers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from neural_echos import logged_names as names

REPO = Path(__file__).resolve().parents[2]


def test_the_names_module_loads_neither_torch_nor_lightning():
    # loaded by path: the neural_echos package itself imports torch; this module must not
    code = (
        "import importlib.util, sys; "
        "spec = importlib.util.spec_from_file_location('logged_names', 'neural_echos/logged_names.py'); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "print(module.ACC, sorted(m for m in ('torch', 'lightning', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "val/acc1 []"


def test_class_names_are_the_classifiers_and_the_taxonomys():
    from neural_echos.classifiers import CLASSES
    from neural_echos.taxonomy import DETAILED_CLASSES

    assert names.CLASSES == tuple(CLASSES)
    assert names.TAXONOMY_CLASSES == tuple(DETAILED_CLASSES)


def test_the_writers_and_readers_spell_no_tag_of_their_own():
    spelled = {"kernels/proportion", "kernels/chance/", "kernels/taxonomy", '"init/method"', '"val/acc1"'}
    for path in (
        "callbacks/kernel_snapshot.py",
        "callbacks/hparams_session.py",
        "callbacks/scalars_layout.py",
        "neural_echos/tools/report.py",
    ):
        code = [
            line
            for line in (REPO / path).read_text().splitlines()
            if not line.lstrip().startswith(("#", "*", "``", "-")) and '"""' not in line
        ]
        for tag in spelled:
            assert not any(tag in line and "``" not in line for line in code), (path, tag)


def test_the_hparams_table_shows_five_columns_and_every_share_beside_its_chance():
    assert len(names.HPARAMS_SHOWN) == 5  # TensorBoard ticks five columns
    shares = [tag for tag in names.HPARAMS_METRICS if tag.startswith("kernels/proportion/")]
    for tag in shares:
        assert tag.replace("proportion", "chance") in names.HPARAMS_METRICS
