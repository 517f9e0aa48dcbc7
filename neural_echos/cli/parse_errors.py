"""Parser errors as one line: jsonargparse's messages tidied, did-you-mean for options and
registered classes, and config files checked as YAML before jsonargparse reads them."""

from __future__ import annotations

import argparse
import difflib
import itertools
import os
import re

from lightning.pytorch.cli import LightningArgumentParser

from neural_echos import safe_yaml
from neural_echos.errors import ConfigError, NeuralEchosError, one_line, option_suggestion


class ConfigParseError(NeuralEchosError, argparse.ArgumentError):
    """A config or command-line error found by the parser (unknown key, wrong type, bad YAML)."""

    def __init__(self, message: str):
        argparse.ArgumentError.__init__(self, None, message)

    def __str__(self) -> str:
        return self.message


class NeuralEchosParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one line plus a hint, not the whole usage.

    jsonargparse prints the usage (about 100 lines here) before the error; raising instead
    lets run.py report it like every other bad input (``error: ...``, exit status 2).
    """

    def error(self, message: str, ex: Exception | None = None):
        if isinstance(ex, ConfigParseError):  # a subcommand parser's error, passed up by the main parser
            raise ex
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        message, hint = tidy_parse_message(one_line(message, limit=10_000), prog)
        hint = hint or f"run `python {prog} --help` for the options"
        suggestion = option_suggestion(message, parser._option_string_actions)
        raise ConfigParseError(f"{one_line(message)}{suggestion} ({hint})") from ex


# The option keys whose value is one of our registered classes: registry name -> class name.
def _registered_classes(key: str) -> dict[str, str]:
    if key == "init.method":
        from neural_echos.init import init_methods

        return {name: cls.__name__ for name, cls in init_methods().items()}
    if key == "snapshot.classifier":
        from neural_echos.classifiers import CLASSIFIERS

        return {name: cls.__name__ for name, cls in sorted(CLASSIFIERS.items())}
    return {}


_INNER_HINT = re.compile(r" \(run `python [^`]*` for the options\)")
_UNION = re.compile(
    r'Parser key "(?P<key>[^"]+)": Does not validate against any of the Union subtypes .*?'
    r"Errors: - Problem with given class_path '(?P<cls>[^']+)': (?P<inner>.*?)(?: - Expected a <class 'NoneType'>.*)?$"
)
_OPTION = re.compile(r'Parser key "(?P<option>[^"]+)": (?P<rest>.*)$')
_UNKNOWN_CLASS = re.compile(
    r'Parser key "(?P<key>[^"]+)":.* Expected a dot import path string: (?P<name>\S+)'
)


def tidy_parse_message(message: str, prog: str = "run.py fit") -> tuple[str, str | None]:
    """jsonargparse's message for a class-valued option (``init.method``, ``snapshot.classifier``)
    lists every Union member it tried and nests another parser's hint; keep what the user got wrong.

    Returns the message and a hint (None: the generic ``--help`` one)."""
    union = _UNION.match(message)
    if union:
        key, cls = union["key"], union["cls"].rsplit(".", 1)[-1]
        inner = _INNER_HINT.sub("", union["inner"]).strip()
        option = _OPTION.match(inner)
        where = f"--{key}.{option['option']}" if option else f"--{key}"
        return f"{where} ({cls}): {option['rest'] if option else inner}", (
            f"run `python {prog} --{key}.help {cls}` for its options"
        )
    unknown = _UNKNOWN_CLASS.match(message)
    classes = _registered_classes(unknown["key"]) if unknown else {}
    if classes:
        key, name = unknown["key"], unknown["name"]
        choices = list(classes.values())
        close = (
            [classes[name]] if name in classes else difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
        )
        mean = f"did you mean {close[0]}? " if close else ""
        return f"--{key}: unknown class {name!r}; {mean}choose one of {', '.join(choices)}", (
            f"run `python {prog} --{key}.help CLASS` for a class's options"
        )
    return message, None


def check_config_files(args: list[str]) -> None:
    """Name the file when a ``--config`` is not valid YAML (jsonargparse's message does not) or is
    over the bounds of :mod:`neural_echos.safe_yaml` (size, nesting, alias expansion).

    Raises:
        ConfigError: a given config file does not parse as YAML or is over a bound.
    """
    import yaml

    given = [value for flag, value in itertools.pairwise(args) if flag in ("--config", "-c")]
    given += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    for value in given:
        if not os.path.isfile(value):
            continue  # a missing file is jsonargparse's error, with the path
        try:
            safe_yaml.check_size(value)
            with open(value, encoding="utf-8") as f:
                list(
                    yaml.compose_all(f, Loader=safe_yaml.BoundedSafeLoader)
                )  # syntax and bounds; tags are jsonargparse's
        except safe_yaml.YAMLBoundError as err:
            raise ConfigError(f"config file {value!r} is refused: {err}; fix the file") from None
        except yaml.MarkedYAMLError as err:
            where = (
                f" at line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}"
                if err.problem_mark
                else ""
            )
            raise ConfigError(
                f"config file {value!r} is not valid YAML{where}: {err.problem or err}; fix the file"
            ) from None
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigError(
                f"config file {value!r} is not valid YAML ({one_line(str(err), 200)}); fix the file"
            ) from None
