"""Bounded YAML reading, for every YAML file or value the project reads (configs, ``base:`` files,
command-line values through jsonargparse, runs' ``hparams.yaml``).

PyYAML's safe loader runs no code, but it reads without limits: a file of a few hundred bytes
with nested aliases ("billion laughs") stands for ~10^9 nodes, which a deep copy, a merge or a
dump then expands (``fit`` and ``report`` hang); 5,000 nested brackets overflow the Python stack
(a 3,000-line ``RecursionError``). The loaders here refuse, with a :class:`YAMLBoundError` saying
which bound was hit:

- a file larger than :data:`MAX_BYTES` (before it is read);
- nesting deeper than :data:`MAX_DEPTH` (counted while composing, before the stack is at risk);
- more than :data:`MAX_NODES` nodes once aliases are expanded (counted on the composed graph,
  each distinct node once, so the count itself is cheap).

The C loader (libyaml) composes in C, out of reach of the depth count, so these are pure-Python
SafeLoader subclasses; project YAML is small, so the speed does not matter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from neural_echos.errors import ConfigError

MAX_BYTES = 4 * 2**20  # configs are a few KiB; hparams.yaml of a run some KiB
MAX_DEPTH = 64  # the deepest project config nests 4-5 levels
MAX_NODES = 200_000  # scalars, lists and mappings after alias expansion


class YAMLBoundError(yaml.YAMLError, ValueError):
    """YAML over a bound (size, nesting, alias expansion); the message names the bound. A
    ``yaml.YAMLError``, so a reader that skips unreadable YAML (``report``) skips it too."""


class _Bounds:
    """Mixin for a PyYAML loader: the depth and expanded-size bounds (module docstring)."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YAMLBoundError(f"it nests deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()  # type: ignore[misc]
        expanded_size(node)
        return node


class BoundedSafeLoader(_Bounds, yaml.SafeLoader):
    """``yaml.SafeLoader`` within the bounds."""


def bounded(loader: type[yaml.SafeLoader]) -> type[yaml.SafeLoader]:
    """``loader`` (a pure-Python SafeLoader subclass) within the bounds."""
    return type(f"Bounded{loader.__name__}", (_Bounds, loader), {})


def expanded_size(node: yaml.Node | None) -> int:
    """The number of nodes of ``node`` with every alias expanded.

    Raises:
        YAMLBoundError: over :data:`MAX_NODES`.
    """
    sizes: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key not in sizes:
            if isinstance(n, yaml.MappingNode):
                total = 1 + sum(size(k) + size(v) for k, v in n.value)
            elif isinstance(n, yaml.SequenceNode):
                total = 1 + sum(size(v) for v in n.value)
            else:
                total = 1
            if total > MAX_NODES:
                raise YAMLBoundError(f"its aliases expand to more than {MAX_NODES:,} values (an alias bomb?)")
            sizes[key] = total
        return sizes[key]

    return 0 if node is None else size(node)


def check_text(text: str | bytes) -> None:
    """Raise :class:`YAMLBoundError` (or ``yaml.YAMLError`` for bad syntax) when ``text`` breaks a bound."""
    if len(text) > MAX_BYTES:
        raise YAMLBoundError(f"it is larger than {MAX_BYTES // 2**20} MiB")
    loader = BoundedSafeLoader(text)
    try:
        while loader.check_node():
            loader.get_node()
    finally:
        loader.dispose()


def check_size(path: str | os.PathLike) -> None:
    """Raise :class:`YAMLBoundError` when the file at ``path`` is over :data:`MAX_BYTES`."""
    if os.path.getsize(path) > MAX_BYTES:
        raise YAMLBoundError(f"it is larger than {MAX_BYTES // 2**20} MiB")


def safe_load(text: str | bytes, loader: type[yaml.SafeLoader] = BoundedSafeLoader) -> Any:
    """``yaml.safe_load`` within the bounds (``loader``: a subclass of :class:`BoundedSafeLoader`)."""
    if len(text) > MAX_BYTES:
        raise YAMLBoundError(f"it is larger than {MAX_BYTES // 2**20} MiB")
    return yaml.load(text, Loader=loader)  # a SafeLoader subclass


def load_file(path: str | os.PathLike, loader: type[yaml.SafeLoader] = BoundedSafeLoader) -> Any:
    """The YAML document of the file at ``path`` within the bounds (the size checked before reading)."""
    check_size(path)
    return safe_load(Path(path).read_text(encoding="utf-8"), loader)


def bound_jsonargparse() -> None:
    """Make jsonargparse check every YAML text it loads (``--config`` files, command-line values)
    against the bounds before its own loader reads it. Idempotent."""
    from jsonargparse import get_loader, set_loader

    original = get_loader("yaml")
    if getattr(original, "bounded", False):
        return

    def bounded_yaml_load(stream):
        if isinstance(stream, (str, bytes)):
            try:
                check_text(stream)
            except (
                YAMLBoundError
            ) as err:  # not a YAMLError here: jsonargparse would take the text as a string
                raise ConfigError(f"a YAML value or config is refused: {err}; fix it") from None
            except yaml.YAMLError:
                pass  # jsonargparse's loader says what is wrong, as before
        return original(stream)

    bounded_yaml_load.bounded = True  # type: ignore[attr-defined]
    set_loader("yaml", bounded_yaml_load, exceptions=(yaml.YAMLError,))
