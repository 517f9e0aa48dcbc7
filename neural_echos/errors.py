"""The base class of errors caused by user input (paths, files, names, parameters).

``run.py`` prints these as one ``error: ...`` line and exits with status 2 instead of a
traceback; set ``NEURAL_ECHOS_TRACEBACK=1`` to see the traceback as well.
"""


class NeuralEchosError(Exception):
    """Bad input that the user can fix; the message says what is wrong and what to do."""


class ConfigError(NeuralEchosError, ValueError):
    """An out-of-range or unknown configuration value."""
