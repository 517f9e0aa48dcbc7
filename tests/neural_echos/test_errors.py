"""neural_echos.errors: which exceptions are the user's to fix, and their one-line message."""

import errno
import os

import pytest

from neural_echos.errors import ConfigError, user_error_message


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.ENOTDIR, errno.EFBIG])
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
