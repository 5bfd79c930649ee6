"""The annotation suite's errors. Each message is meant for the person who caused it (an admin importing a
task, an annotator submitting a label); the HTTP API turns them into a status code and that message."""
from __future__ import annotations

from media.errors import AVStudioError


class AnnotationError(AVStudioError):
    """Input the annotation suite cannot use: a bad import, a bad upload, a bad request. HTTP 400."""

    status = 400


class NotAllowed(AnnotationError):
    """The signed-in user may not do this (not an admin, not their label, not their item). HTTP 403."""

    status = 403


class NotSignedIn(AnnotationError):
    """No valid session. HTTP 401."""

    status = 401


class NotFound(AnnotationError):
    """No such task, item, user or label. HTTP 404."""

    status = 404


class Conflict(AnnotationError):
    """The request clashes with the store's state: a lease that expired and went to someone else, a name
    already taken. HTTP 409."""

    status = 409


class TooLarge(AnnotationError):
    """An upload over its size limit. HTTP 413."""

    status = 413
