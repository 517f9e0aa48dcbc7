"""``--config FILE`` for run.py: jsonargparse's, plus two things it lacks, so configs can be deltas.

1. **A file may extend others**: a top-level ``base:`` (a path or a list, relative to the file)
   names files applied first, as if given as ``--config`` before it; the file's own keys then
   override them. An experiment is its base recipe plus what differs::

       base: ../../cifar10/convnext_atto.yaml
       model:
         model_kwargs: {kernel_sizes: 9, patch_size: 2}

   (jsonargparse accepts a ``config:`` key inside a file, but it replaces whole sections such as
   ``trainer:`` instead of merging them.)
2. **Plain dict values merge key by key** across files (and bases), as ``--model.model_kwargs.k v``
   does on the command line: ``model_kwargs: {kernel_sizes: 9}`` after a file with
   ``model_kwargs: {drop_path_rate: 0.1}`` gives both (jsonargparse alone keeps only the last
   file's dict). ``null`` still clears a value. Class sections (``data``, ``init.method``, the
   logger) are merged by jsonargparse itself, which resets ``init_args`` when ``class_path`` changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile

from neural_echos import safe_yaml
from neural_echos.errors import one_line

BASE_KEY = "base"
MAX_BASE_CHAIN = 32  # files extending each other (the project's recipes: 2-3)


class ConfigFile(ActionConfigFile):
    """``--config``: jsonargparse's config file action with ``base:`` files and dict merging."""

    @staticmethod
    def apply_config(parser, cfg, dest, value) -> None:
        _apply(parser, cfg, dest, value, chain=())


def _apply(parser, cfg, dest, value: Any, chain: tuple[Path, ...]) -> None:
    body = value
    path = Path(value) if isinstance(value, str) and value.endswith((".yaml", ".yml")) else None
    if path is not None and path.is_file():
        if len(chain) >= MAX_BASE_CHAIN:
            parser.error(
                f"{str(path)!r}: `{BASE_KEY}:` files extend each other more than {MAX_BASE_CHAIN} deep; "
                "shorten the chain"
            )
        try:
            content = safe_yaml.load_file(path)
        except safe_yaml.YAMLBoundError as err:
            parser.error(f"config file {str(path)!r} is refused: {err}; fix the file")
        except yaml.YAMLError as err:
            parser.error(f"config file {str(path)!r} is not valid YAML: {one_line(str(err), 200)}")
        if isinstance(content, dict) and BASE_KEY in content:
            bases = content.pop(BASE_KEY)
            bases = [bases] if isinstance(bases, str) else bases
            if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
                parser.error(
                    f"{str(path)!r}: `{BASE_KEY}:` must be a config file path or a list of them; got {bases!r}"
                )
            for base in bases:
                base_path = path.parent / base
                if not base_path.is_file():
                    parser.error(
                        f"{str(path)!r}: its base config {base!r} does not exist (looked for {str(base_path)!r})"
                    )
                if base_path.resolve() in chain or base_path.resolve() == path.resolve():
                    parser.error(f"{str(path)!r}: base configs form a loop through {base!r}")
                _apply(parser, cfg, dest, str(base_path), (*chain, path.resolve()))
            if not content:
                return
            # the rest of the file, as a YAML string (its values are not paths relative to the file)
            body = yaml.safe_dump(content, sort_keys=False)
    before = {key: item for key, item in cfg.items() if isinstance(item, dict)}
    ActionConfigFile.apply_config(parser, cfg, dest, body)
    for key, old in before.items():
        new = cfg.get(key)
        if isinstance(new, dict):
            cfg[key] = _merged(old, new)


def _merged(old: dict, new: dict) -> dict:
    """``new`` over ``old``, recursing into dicts both have."""
    out = dict(old)
    for key, value in new.items():
        out[key] = (
            _merged(old[key], value) if isinstance(value, dict) and isinstance(old.get(key), dict) else value
        )
    return out
