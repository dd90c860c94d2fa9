"""The one error type for bad input, so callers catch a single class and never see a traceback."""

from __future__ import annotations


class DataValidationError(ValueError):
    """Input that cannot be used: unreadable file, missing column, no rows, or too many bad rows.

    Messages name the file, row numbers and field, never the values (they may be personal data).
    """
