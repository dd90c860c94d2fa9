"""Input contract, readers, validation with quarantine, temporal splits and the demo catalog."""

from __future__ import annotations

from recsys.data.readers import DataFileError
from recsys.data.splits import global_split, per_user_split, time_at_share
from recsys.data.validation import Dataset, DataValidationError, TableReport, load_dataset

__all__ = [
    "DataFileError",
    "DataValidationError",
    "Dataset",
    "TableReport",
    "global_split",
    "load_dataset",
    "per_user_split",
    "time_at_share",
]
