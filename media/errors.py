"""The one error base of AV Studio.

Every error whose message is meant for the person using the app or a CLI derives from
:class:`AVStudioError`: unreadable media, no face, input too long, a model that cannot be loaded.
The app and the CLIs catch this class only; anything else (a bug in numpy, torch or our code)
is logged with its traceback instead of being shown as the user's mistake.
"""
from __future__ import annotations


class AVStudioError(Exception):
    """Input or settings AV Studio cannot use; ``str(err)`` is a message for the user."""
