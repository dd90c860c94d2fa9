"""recsys: personalized recommendations from item text and interaction logs."""

from __future__ import annotations

__version__ = "0.1.0"
