"""Errors that carry a message meant for a person (CLI one-liners, HTTP 4xx bodies, QGIS message bar)."""


class UserError(Exception):
    """Bad input or an unusable environment, explained in one sentence.

    Raised anywhere in the backend; the CLI prints it as one line and exits non-zero, the service
    turns it into a 4xx JSON error. Never raised for a bug in our own code.
    """


class CancelledError(Exception):
    """A run was cancelled by its caller (a service job, a QGIS task)."""
