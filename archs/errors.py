"""The error every architecture check raises: the weights or graph fit no known family.

Why its own module: the ncnn graph reader and builder raise it too, and they do not need the
family records (or torch) to say so.
"""

from __future__ import annotations

from ..errors import UserError


class UnsupportedModelError(UserError, ValueError):
    """The weights or graph match no supported architecture; the message says what was found."""
