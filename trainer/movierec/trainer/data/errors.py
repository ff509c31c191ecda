"""Errors of the data layer.

Every problem with an input file is a `DataError` whose message is one line naming the file (and line and
field where known): the CLI prints it verbatim, so it has to be enough to fix the file without a traceback.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file is missing, malformed or inconsistent; the message is one actionable line."""


class NetworkError(DataError):
    """A download could not reach its server (offline, DNS, refused). Tests skip on this, and only this."""
