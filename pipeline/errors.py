"""Typed errors. Input errors name the input and are recorded per item; the others stop a stage."""

from __future__ import annotations


class InputError(Exception):
    """A bad input: recorded as a Failure for that input, the batch goes on."""

    kind = "input"

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason


class CorruptInput(InputError):
    kind = "corrupt"


class EncryptedInput(InputError):
    kind = "encrypted"


class EmptyInput(InputError):
    kind = "empty"


class TooLargeInput(InputError):
    kind = "too_large"


class UnsupportedInput(InputError):
    kind = "unsupported"


class UnreadableInput(InputError):
    """Permission denied, symlink loop, vanished file: the bytes cannot be read."""

    kind = "unreadable"


class InputTimeout(InputError):
    kind = "timeout"


class ConfigError(ValueError):
    """A bad config key or value; the message names the key and what is valid."""


class EnvironmentProblem(RuntimeError):
    """Something missing on the machine (e.g. Tesseract); the message says how to fix it."""
