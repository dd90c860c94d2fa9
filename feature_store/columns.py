"""Column names and units every part of the feature store shares (no imports: the bottom layer)."""

from __future__ import annotations

DAY = 86_400
USER_ID = "user_id"
ITEM_ID = "item_id"
TS = "ts"
CATEGORY = "category"
RATING = "rating"
WEIGHT = "weight"
AGE = "_age_s"
"""Seconds between an event and the moment its view's state is computed for (``AS_OF``)."""
AS_OF = "_as_of"
NOW = "_now"
"""Column holding the moment a feature is read at (the row's ts offline, ``now`` online)."""
ITEM_TS = "item_ts"
"""Optional column of training rows: the moment their item-side state is cut at, at or before the
row's ts (a nightly push before the user's moment), where the caller places it on a grid of its own."""
NEVER_DAYS = 3650.0
"""Fill for every days-since feature when there is no such event: ten years, 'never'."""
EVENT_COLUMNS = (USER_ID, ITEM_ID, TS, WEIGHT, RATING, CATEGORY)
"""What an event carries, offline (a row of the events frame) and live (a logged event): the
columns an aggregation of an ``events`` view may read."""
