"""neural_echos.safe_yaml: YAML read within bounds (size, nesting, alias expansion), each refusal
a YAMLBoundError that says which bound; ordinary YAML reads as yaml.safe_load reads it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from neural_echos import safe_yaml
from neural_echos.safe_yaml import YAMLBoundError

REPO = Path(__file__).resolve().parents[2]


def alias_bomb(levels: int = 9) -> str:
    """ "Billion laughs": 9 levels of 9 aliases each, ~10^9 values in some 700 bytes."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once():
    start = time.perf_counter()
    with pytest.raises(YAMLBoundError, match="aliases expand to more than"):
        safe_yaml.safe_load(alias_bomb())
    assert time.perf_counter() - start < 2
    assert safe_yaml.safe_load(alias_bomb(levels=2))["a2"][0][0] == ["x"] * 9  # a few aliases are fine


def test_deep_nesting_is_refused_without_a_recursion_error():
    with pytest.raises(YAMLBoundError, match="nests deeper than 64 levels"):
        safe_yaml.safe_load("a: " + "[" * 5000 + "]" * 5000)
    assert safe_yaml.safe_load("a: " + "[" * 60 + "]" * 60) is not None


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_yaml, "MAX_BYTES", 100)
    path = tmp_path / "big.yaml"
    path.write_text("x: " + "y" * 200 + "\n")
    with pytest.raises(YAMLBoundError, match="larger than"):
        safe_yaml.load_file(path)
    with pytest.raises(YAMLBoundError, match="larger than"):
        safe_yaml.check_text(path.read_text())


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO))
)
def test_the_projects_configs_read_as_safe_load_reads_them(path):
    assert safe_yaml.load_file(path) == yaml.safe_load(path.read_text())


def test_a_bound_error_is_a_yaml_error_so_report_skips_such_a_run(tmp_path):
    from neural_echos.tools.report import _load_yaml

    (tmp_path / "hparams.yaml").write_text(alias_bomb())
    with pytest.raises(yaml.YAMLError, match="aliases expand"):
        _load_yaml(tmp_path / "hparams.yaml")
    (tmp_path / "hparams.yaml").write_text("model_name: !!python/name:os.system x\n")
    assert _load_yaml(tmp_path / "hparams.yaml") == {
        "model_name": "x"
    }  # unknown tags still read as plain YAML
