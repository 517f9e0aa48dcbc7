"""neural_echos.errors: which exceptions are the user's to fix, and their one-line message."""

import errno
import os

import pytest

from neural_echos.errors import ConfigError, user_error_message


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.ENOTDIR, errno.EFBIG]
)
def test_file_system_errors_are_user_errors(code):
    message = user_error_message(OSError(code, os.strerror(code), "/out/summary.json"))
    assert message is not None and "/out/summary.json" in message and "\n" not in message


def test_a_user_error_is_found_down_the_cause_chain():
    try:
        try:
            raise ConfigError("lr must be > 0")
        except ConfigError as err:
            raise ValueError("jsonargparse: problem with class") from err
    except ValueError as wrapped:
        assert user_error_message(wrapped) == "lr must be > 0"


def test_bugs_are_not_user_errors():
    assert user_error_message(KeyError("x")) is None
    assert user_error_message(OSError(errno.EIO, "Input/output error")) is None  # hardware, not a path to fix


def test_messages_are_one_line_and_bounded():
    message = user_error_message(ConfigError("a\n  b\n" + "x" * 5000))
    assert message.startswith("a b ") and "\n" not in message and len(message) <= 600


def test_one_line_argument_parser(capsys, monkeypatch):
    from neural_echos.errors import OneLineArgumentParser, UsageError, positive_int

    monkeypatch.delenv("NEURAL_ECHOS_TRACEBACK", raising=False)
    parser = OneLineArgumentParser(prog="run.py demo")
    parser.add_argument("path")
    parser.add_argument("--threshold")
    parser.add_argument("--max-bytes", type=positive_int)
    cases = [
        (
            ["x", "--treshold", "1"],
            (
                "error: unrecognized arguments: --treshold 1; did you mean --threshold? "
                "(run `python run.py demo --help` for the options)"
            ),
        ),
        (
            ["x", "--treshold=1", "--zzz"],
            "error: unrecognized arguments: --treshold=1 --zzz; did you mean --threshold?",
        ),
        (
            ["x", "--zzz"],
            "error: unrecognized arguments: --zzz (run `python run.py demo --help` for the options)",
        ),
        ([], "error: the following arguments are required: path (run"),
        (
            ["x", "--max-bytes", "-5"],
            "error: argument --max-bytes: must be a positive whole number (at least 1), got -5",
        ),
        (
            ["x", "--max-bytes", "0"],
            "error: argument --max-bytes: must be a positive whole number (at least 1), got 0",
        ),
        (
            ["x", "--max-bytes", "1e3"],
            "error: argument --max-bytes: expected a positive whole number, got '1e3'",
        ),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(message) and err.count("\n") == 1 and "usage:" not in err, err
    assert parser.parse_args(["x", "--max-bytes", "7"]).max_bytes == 7
    monkeypatch.setenv("NEURAL_ECHOS_TRACEBACK", "1")
    with pytest.raises(UsageError, match="did you mean --threshold"):
        parser.parse_args(["x", "--treshold", "1"])


def test_an_error_of_ours_from_a_dataloader_worker_is_its_own_message():
    """torch's ExceptionWrapper re-raises ``type(err)(<the worker's traceback>)``; the line is the message."""
    import sys

    from torch._utils import ExceptionWrapper

    from neural_echos.errors import ConfigError, user_error_message

    try:
        raise ConfigError("cannot read image 'a.JPEG' (OSError: empty). Fix: x\n" + "y" * 5)
    except ConfigError:
        wrapper = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 0")
    with pytest.raises(ConfigError) as caught:
        wrapper.reraise()
    assert str(caught.value).startswith("Caught ConfigError in DataLoader worker process 0")
    assert user_error_message(caught.value) == "cannot read image 'a.JPEG' (OSError: empty). Fix: x yyyyy"
    assert user_error_message(ConfigError("Caught it, no traceback")) == "Caught it, no traceback"


def test_one_line_of_an_exception_is_its_message_or_its_type():
    from neural_echos.errors import one_line

    assert one_line(ValueError("bad\n value  here")) == "bad value here"
    assert one_line(EOFError()) == "EOFError"
    assert one_line("x" * 50, 20) == "x" * 16 + " ..."


def test_every_entry_point_exits_through_report_and_exit(capsys, monkeypatch):
    from neural_echos.errors import NeuralEchosError, exits_on_user_error

    monkeypatch.delenv("NEURAL_ECHOS_TRACEBACK", raising=False)

    @exits_on_user_error
    def entry(err):
        raise err

    with pytest.raises(SystemExit) as exit_info:
        entry(NeuralEchosError("no such run:\n  logs/x"))
    assert exit_info.value.code == 2 and capsys.readouterr().err == "error: no such run: logs/x\n"
    with pytest.raises(KeyError):  # a bug keeps its traceback
        entry(KeyError("x"))
    monkeypatch.setenv("NEURAL_ECHOS_TRACEBACK", "1")
    with pytest.raises(NeuralEchosError):  # the traceback on request
        entry(NeuralEchosError("x"))
