"""User errors and the one way every entry point reports them.

:class:`NeuralEchosError` is the base class of errors caused by user input (paths, files,
names, parameters). :func:`user_error_message` turns any exception that the user can fix
(ours, a Lightning configuration error, a file-system error such as a full disk) into the one
line ``run.py`` prints as ``error: ...`` before it exits with status 2; anything else is a bug
and keeps its traceback. Set ``NEURAL_ECHOS_TRACEBACK=1`` to see the traceback of user errors
as well.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import functools
import os
import re
import sys

TRACEBACK_ENV = "NEURAL_ECHOS_TRACEBACK"
# file-system failures caused by the machine or the paths given, not by a bug
USER_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file is larger than this system allows",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a path component is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.EEXIST: "it already exists",
    errno.EMFILE: "too many open files",
}
MAX_MESSAGE_CHARS = 600


class NeuralEchosError(Exception):
    """Bad input that the user can fix; the message says what is wrong and what to do."""


class AnalysisError(NeuralEchosError, ValueError):
    """Bad input to the kernel analysis: the message names the file or model and the fix."""


class ConfigError(NeuralEchosError, ValueError):
    """An out-of-range or unknown configuration value."""


class ResumeError(NeuralEchosError):
    """A resume, or a run folder, that would mix two runs or silently change one."""


class UsageError(NeuralEchosError):
    """A command line that argparse cannot parse (unknown option, bad value, missing argument)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one ``error: ...`` line with exit status 2.

    argparse prints the whole usage before its error; this parser says what is wrong, suggests
    the option meant by a misspelt one (``did you mean --threshold?``) and points at ``--help``
    (which still prints the full help), like the ``fit`` parser of ``neural_echos.cli``. It reports through
    :func:`report_and_exit`, so ``NEURAL_ECHOS_TRACEBACK=1`` raises :class:`UsageError` instead.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --thresh is a typo to report, not --threshold
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        hint = option_suggestion(message, self._option_string_actions)
        err = UsageError(f"{one_line(message)}{hint} (run `python {self.prog} --help` for the options)")
        report_and_exit(err)
        raise err


def option_suggestion(message: str, options) -> str:
    """``"; did you mean --threshold?"`` for argparse's "unrecognized arguments: --treshold 0.6",
    from the parser's option strings; ``""`` for any other message or no close option."""
    if not message.startswith("unrecognized arguments:"):
        return ""
    options = [option for option in options if option.startswith("--")]
    hints = []
    for word in message.split(":", 1)[1].split():
        if not word.startswith("--"):
            continue
        close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=0.7)
        if close and close[0] not in hints:
            hints.append(close[0])
    return f"; did you mean {' or '.join(hints)}?" if hints else ""


def positive_int(text: str) -> int:
    """argparse ``type`` for a count or size that must be at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number (at least 1), got {value}")
    return value


def one_line(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Whitespace (newlines included) collapsed to single spaces, cut at ``limit`` characters.

    An exception gives its message, or its type's name when the message is empty.
    """
    if isinstance(text, BaseException):
        text = str(text) or type(text).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 4].rstrip() + " ..."


def user_error_message(err: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or ``None`` for a bug.

    Looks along the cause chain, since jsonargparse and Lightning wrap the errors raised
    while they build classes or run hooks.
    """
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        message = _direct_message(cause)
        if message is not None:
            return one_line(message)
        cause = cause.__cause__ or cause.__context__
    return None


def _direct_message(err: BaseException) -> str | None:
    if isinstance(err, NeuralEchosError):
        return worker_message(str(err), type(err))
    # an error of ours raised in a DataLoader worker process, re-raised in the main process as
    # another type (torch tries the original type first, which for ours works: handled above)
    if str(err).startswith("Caught ") and "Original Traceback" in str(err):
        message = worker_message(str(err), NeuralEchosError)
        if message != str(err):
            return message
    # Lightning's own configuration errors (negative max_epochs, an accelerator this machine
    # lacks, ...); looked up only if Lightning is loaded, so that analyze/report never import it
    exceptions = sys.modules.get("lightning.fabric.utilities.exceptions")
    if exceptions is not None and isinstance(err, exceptions.MisconfigurationException):
        return (
            f"{one_line(str(err)).rstrip('.!')}. This is a Lightning trainer setting: fix it in the config or on "
            "the command line (run.py fit --help lists the trainer.* options)"
        )
    if isinstance(err, OSError) and err.errno in USER_ERRNOS:
        where = " -> ".join(repr(str(p)) for p in (err.filename, err.filename2) if p is not None)
        what = err.strerror or USER_ERRNOS[err.errno]
        return (
            f"{what}{': ' + where if where else ''} ({USER_ERRNOS[err.errno]}). Check the path, its permissions "
            "and the free space, then run again"
        )
    return None


def worker_message(message: str, kind: type) -> str:
    """The original message of an error re-raised from a DataLoader worker process.

    torch re-raises a worker's exception as ``kind("Caught X in DataLoader worker process N.\n
    Original Traceback ...\nmodule.X: <message>")``: the worker's whole traceback, which the
    600-character line would cut before the message (the file, the fix). The message is what
    follows the last ``X: `` line of an error of ours (``kind`` or a subclass of NeuralEchosError);
    other messages come back unchanged.
    """
    if not message.startswith("Caught ") or "\nOriginal Traceback" not in message:
        return message
    names = {cls.__name__ for cls in _subclasses(NeuralEchosError)} | {kind.__name__}
    pattern = re.compile(rf"^(?:[\w.]+\.)?(?:{'|'.join(map(re.escape, sorted(names)))}): ", re.MULTILINE)
    found = list(pattern.finditer(message))
    return message[found[-1].end() :].strip() if found else message


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


def exits_on_user_error(command):
    """Decorate an entry point (``run.py``'s main, analyze's, survey's, report's) so that a user error
    it raises goes through :func:`report_and_exit`: one ``error: ...`` line and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Exception as err:
            report_and_exit(err)  # exits with status 2 for a user error
            raise

    return wrapper


def report_and_exit(err: BaseException) -> None:
    """Print ``error: <message>`` and exit with status 2 if ``err`` is a user error; else return.

    With ``NEURAL_ECHOS_TRACEBACK=1`` it returns, so that the caller re-raises with the traceback.
    """
    message = user_error_message(err)
    if message is None or os.environ.get(TRACEBACK_ENV):
        return
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
