"""neural_echos.cli.config_files.ConfigFile: `--config` files with a `base:` and plain dicts merged key by key (a bare
jsonargparse parser here; tests/test_experiment_configs.py checks the real configs through run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonargparse import ArgumentError, ArgumentParser

from neural_echos.cli.config_files import ConfigFile
from neural_echos.init import InitMethod


class Model:
    def __init__(self, name: str = "a", lr: float = 0.1, model_kwargs: dict[str, Any] | None = None):
        pass


def parser() -> ArgumentParser:
    p = ArgumentParser(exit_on_error=False)
    p.add_argument("--config", action=ConfigFile)
    p.add_class_arguments(Model, "model")
    p.add_argument("--trainer.max_epochs", type=int, default=1)
    p.add_argument("--trainer.devices", type=int, default=1)
    p.add_argument("--init.method", type=InitMethod | None, default=None)
    return p


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_a_base_applies_first_relative_to_the_file(tmp_path):
    write(
        tmp_path / "recipes" / "base.yaml",
        "trainer: {max_epochs: 100, devices: 8}\nmodel: {name: b, lr: 0.5}\n",
    )
    write(tmp_path / "group" / "extra.yaml", "model: {model_kwargs: {drop_path_rate: 0.1}}\n")
    delta = write(
        tmp_path / "experiments" / "x" / "delta.yaml",
        "base: [../../recipes/base.yaml, ../../group/extra.yaml]\ntrainer: {max_epochs: 50}\n"
        "model: {model_kwargs: {kernel_sizes: 9}}\n",
    )
    cfg = parser().parse_args(["--config", delta])
    assert (cfg.trainer.max_epochs, cfg.trainer.devices) == (50, 8)  # sections merge key by key
    assert (cfg.model.name, cfg.model.lr) == ("b", 0.5)
    assert cfg.model.model_kwargs == {"drop_path_rate": 0.1, "kernel_sizes": 9}
    # a chain of bases, and a file that is only a base
    only = write(tmp_path / "experiments" / "only.yaml", "base: x/delta.yaml\n")
    via_chain = parser().parse_args(["--config", only]).as_dict()
    assert {k: v for k, v in via_chain.items() if k != "config"} == {
        k: v for k, v in cfg.as_dict().items() if k != "config"
    }


def test_dicts_merge_across_config_files_as_on_the_command_line(tmp_path):
    first = write(
        tmp_path / "a.yaml", "model: {model_kwargs: {drop_path_rate: 0.1, stem: {patch: 4, width: 8}}}\n"
    )
    second = write(tmp_path / "b.yaml", "model: {model_kwargs: {kernel_sizes: 9, stem: {patch: 2}}}\n")
    from_files = parser().parse_args(["--config", first, "--config", second]).model.model_kwargs
    assert from_files == {"drop_path_rate": 0.1, "kernel_sizes": 9, "stem": {"patch": 2, "width": 8}}
    on_the_line = (
        parser().parse_args(["--config", first, "--model.model_kwargs.kernel_sizes", "9"]).model.model_kwargs
    )
    assert on_the_line["drop_path_rate"] == 0.1 and on_the_line["kernel_sizes"] == 9
    # null clears; a file that does not mention the dict keeps it
    cleared = write(tmp_path / "c.yaml", "model: {model_kwargs: null}\n")
    assert parser().parse_args(["--config", first, "--config", cleared]).model.model_kwargs is None
    other = write(tmp_path / "d.yaml", "model: {lr: 0.3}\n")
    assert (
        parser().parse_args(["--config", first, "--config", other]).model.model_kwargs["drop_path_rate"]
        == 0.1
    )


def test_class_sections_merge_init_args_and_reset_them_on_another_class(tmp_path):
    dog = write(tmp_path / "dog.yaml", "init: {method: {class_path: DoGInit, init_args: {scale: kaiming}}}\n")
    on_only = write(
        tmp_path / "on.yaml", "init: {method: {class_path: DoGInit, init_args: {on_center_prob: 1.0}}}\n"
    )
    kaiming = write(tmp_path / "k.yaml", "init: {method: {class_path: KaimingNormalInit}}\n")
    method = parser().parse_args(["--config", dog, "--config", on_only]).init.method
    assert (method.init_args.scale, method.init_args.on_center_prob) == ("kaiming", 1.0)
    method = parser().parse_args(["--config", dog, "--config", kaiming]).init.method
    assert method.class_path.endswith("KaimingNormalInit") and not method.get("init_args")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": "base: nope.yaml\n"}, r"its base config 'nope.yaml' does not exist"),
        ({"a.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n"}, "base configs form a loop"),
        ({"a.yaml": "base: a.yaml\n"}, "base configs form a loop"),
        ({"a.yaml": "base: {x: 1}\n"}, "must be a config file path or a list of them"),
        (
            {"a.yaml": "base: b.yaml\nmodel: {learning_rate: 1}\n", "b.yaml": "model: {lr: 1}\n"},
            "learning_rate",
        ),
        ({"a.yaml": "model: [unclosed\n"}, "not valid YAML"),
    ],
)
def test_bad_files_are_parse_errors(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(ArgumentError, match=message):
        parser().parse_args(["--config", str(tmp_path / "a.yaml")])


def test_base_chains_and_base_files_are_read_within_bounds(tmp_path):
    """A `base:` chain deeper than MAX_BASE_CHAIN (a RecursionError at ~500) and a base file that is
    an alias bomb are parse errors that say so."""
    from neural_echos.cli.config_files import MAX_BASE_CHAIN
    from tests.neural_echos.test_safe_yaml import alias_bomb

    for i in range(MAX_BASE_CHAIN + 5):
        write(tmp_path / f"c{i}.yaml", f"base: c{i + 1}.yaml\n")
    write(tmp_path / f"c{MAX_BASE_CHAIN + 5}.yaml", "model: {lr: 1}\n")
    with pytest.raises(ArgumentError, match=f"extend each other more than {MAX_BASE_CHAIN} deep"):
        parser().parse_args(["--config", str(tmp_path / "c0.yaml")])
    write(tmp_path / "bomb.yaml", alias_bomb())
    write(tmp_path / "a.yaml", "base: bomb.yaml\n")
    with pytest.raises(ArgumentError, match="bomb.yaml' is refused: its aliases expand"):
        parser().parse_args(["--config", str(tmp_path / "a.yaml")])
    write(tmp_path / "short.yaml", "base: c30.yaml\n")  # a chain within the bound still works
    assert parser().parse_args(["--config", str(tmp_path / "short.yaml")]).model.lr == 1
