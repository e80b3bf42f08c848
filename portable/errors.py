"""The one base class for "the user's input is wrong", so every command line reports it the same way.

Why: the runtime, the converter and the trainer each raise their own precise errors (a bad model
file, an unknown config key, a truncated image). A CLI catching `UserError` prints its one-line
message and exits non-zero without a traceback; anything else is a bug and says so.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (files, options, configs); the message is one line meant for them."""


class UsageError(UserError, ValueError):
    """Options or paths that cannot go together (a bad option value, several inputs into one output file, ...)."""


def one_line(err: BaseException) -> str:
    """The error's message on one line (whitespace collapsed), or its class name when empty."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def printable(text: str) -> str:
    """`text` with control characters (a newline in a file name) and undecodable bytes escaped as
    Python writes them (\\n, \\udcff), so a name stays on its line and can be told apart."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
