"""Online experiments: arms of runs split users by a stable hash; exposures and the events attributed
to them are logged in the online store; the report compares the arms with confidence intervals."""

from __future__ import annotations

from recsys.experiments.analysis import METRICS, ExperimentAnalysis, analyze, report_experiment
from recsys.experiments.attribution import PostedEvent, attribute
from recsys.experiments.definition import (
    BUCKETS,
    CURRENT_RUN,
    Arm,
    Experiment,
    ExperimentError,
    bucket_of,
    parse_arm,
)
from recsys.experiments.store import ExperimentStore

__all__ = [
    "BUCKETS",
    "CURRENT_RUN",
    "METRICS",
    "Arm",
    "Experiment",
    "ExperimentAnalysis",
    "ExperimentError",
    "ExperimentStore",
    "PostedEvent",
    "analyze",
    "attribute",
    "bucket_of",
    "parse_arm",
    "report_experiment",
]
