"""What a worker serves from: one promoted run loaded whole, swapped atomically on reload.

A :class:`ServingState` is built off to the side (:func:`load_state`) and published by one
reference assignment in :class:`StateHolder`; a request takes the reference once and keeps
using that state to its end, so a reload never drops or mixes requests. A replaced state is
closed by garbage collection once its last request finished.

While an online experiment runs, the state also holds each arm's run, loaded the same way
(:class:`ActiveExperiment`); the promoted run keeps the online store's state, which every arm reads,
so arms must share its feature definitions.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from recsys.artifacts import RunStore
from recsys.assemble import load_recommender
from recsys.catalog import Histories
from recsys.config import Config, config_of_run
from recsys.experiments import Experiment, ExperimentError, ExperimentStore
from recsys.index import ANNIndex, load_index
from recsys.ranking.behaviour import OnlineBehaviour
from recsys.recommend import Recommender
from recsys.retrieval.semantic import SemanticSource
from serving.settings import ServingSettings

if TYPE_CHECKING:
    from feature_store.online import OnlineStore
    from recsys.embeddings import QueryEncoder

log = logging.getLogger("recsys.serving")

FILTER_KEYS = {"category": "categories", "tag": "tags"}
"""``filter=`` keys and the item list columns they match."""


CACHE_TAIL = 32
"""History entries (the latest) that identify a user's history in the answer cache, with its length."""


class ResultCache:
    """Answers (their JSON) by key, least recently used dropped first, bounded both in entries and in
    bytes (the answer, the key and the bookkeeping of each entry); thread-safe (requests rank in threads).
    """

    ENTRY_OVERHEAD = 120
    """Bytes of an ordered-dict slot and its links, beyond the key and the answer."""

    def __init__(self, size: int, max_bytes: int = 2**62) -> None:
        self.size, self.max_bytes = size, max_bytes
        self._answers: OrderedDict[tuple[object, ...], tuple[bytes, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def nbytes(self) -> int:
        """Bytes held now (never above ``max_bytes``)."""
        return self._bytes

    def get(self, key: tuple[object, ...]) -> bytes | None:
        with self._lock:
            entry = self._answers.get(key)
            if entry is None:
                return None
            self._answers.move_to_end(key)
            return entry[0]

    def put(self, key: tuple[object, ...], answer: bytes) -> None:
        cost = self.ENTRY_OVERHEAD + sys.getsizeof(answer) + _deep_size(key)
        if self.size <= 0 or cost > self.max_bytes:
            return
        with self._lock:
            previous = self._answers.pop(key, None)
            if previous is not None:
                self._bytes -= previous[1]
            self._answers[key] = (answer, cost)
            self._bytes += cost
            while len(self._answers) > self.size or self._bytes > self.max_bytes:
                _, (_, dropped) = self._answers.popitem(last=False)
                self._bytes -= dropped


def _deep_size(value: object) -> int:
    """Bytes of ``value`` with the tuples inside it (a cache key: strings, numbers, bytes, tuples)."""
    inner = sum(_deep_size(part) for part in value) if isinstance(value, tuple) else 0
    return sys.getsizeof(value) + inner


class FilterError(ValueError):
    """A ``filter`` expression that cannot be parsed; the message says what is wrong."""


def serving_config(run_dir: Path, config: Config) -> Config:
    """The run's own config (its models and feature definitions) with this deployment's online store."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    run_config = config_of_run(manifest["config"])
    features = run_config.features.model_copy(update={"online": config.features.online})
    return run_config.model_copy(update={"features": features})


def ensure_published(run_dir: Path, config: Config) -> None:
    """Push the run's features to the online store unless it already holds this run's state.

    The push serializes with every other writer through the store itself and replays the event
    log onto the run's state, so two workers that both push the same run leave the same state,
    and no event posted meanwhile is lost.
    """
    from feature_store.online import open_online_store
    from recsys.online_publish import publish_to_online

    with open_online_store(config.features, run_dir.parent) as store:
        meta = store.read_meta()
        current = meta.get("run_id") == run_dir.name and meta.get("definitions") == store.definitions_version
    if not current:
        log.info("pushing run %s to the online store", run_dir.name)
        publish_to_online(run_dir, config)


def store_run_id(config: Config, runs_dir: Path) -> str | None:
    """The run whose state the online store holds (None: never pushed)."""
    from feature_store.online import open_online_store

    with open_online_store(config.features, runs_dir) as store:
        return store.read_meta().get("run_id")


def active_experiment(runs_dir: Path) -> Experiment | None:
    """The experiment running in ``runs_dir`` (None: none)."""
    return ExperimentStore(runs_dir).active()


@dataclass
class ServingState:
    """A promoted run, ready to answer: recommender, online store, histories, item metadata."""

    run_id: str
    run_dir: Path
    config: Config
    recommender: Recommender
    store: OnlineStore
    index: ANNIndex
    histories: dict[str, tuple[np.ndarray, np.ndarray]]
    """The run's history of each user (item indices, ts; oldest first): the complete seen-set."""
    data_until: int
    """The run's last event time: live events after it come from the online store."""
    as_of: int
    """The moment the run's features describe (just after its last event)."""
    titles: list[str | None]
    clock: str = "events"
    cache: ResultCache = field(default_factory=lambda: ResultCache(0))
    loaded_at: float = field(default_factory=time.time)
    _filters: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _encoder: QueryEncoder | None = field(default=None, repr=False)
    _encoder_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held while the query encoder loads (it is thread-safe once loaded)."""
    experiment: ActiveExperiment | None = None
    """The running experiment, with a state per arm (None: every user gets this run)."""

    def for_user(self, user_id: str) -> tuple[str | None, ServingState]:
        """The arm (None without an experiment) and the state that answers ``user_id``."""
        if self.experiment is None:
            return None, self
        arm = self.experiment.definition.assign(user_id)
        return arm, self.experiment.arms[arm]

    # -- histories --------------------------------------------------------------------------
    def history(self, user_id: str) -> Histories:
        """The user's run history plus their live events from the online store (newer than the run)."""
        from feature_store.online import get_user_history

        items, stamps = self.histories.get(user_id, (_EMPTY, _EMPTY))
        live = [(item, ts) for item, ts in get_user_history(self.store, user_id) if ts > self.data_until]
        if live:
            index = self.recommender.catalog.index
            known = [(index(item), ts) for item, ts in live if index(item) is not None]
            items = np.concatenate([items, np.asarray([i for i, _ in known], dtype=np.int64)])
            stamps = np.concatenate([stamps, np.asarray([ts for _, ts in known], dtype=np.int64)])
        return Histories([user_id], [items], [stamps])

    def answer_key(self, history: Histories, now: int, *request: object) -> tuple[object, ...]:
        """What a ranked answer depends on besides the run: the user's history (live events change its
        tail), the moment, the online store's push, and the request's own parameters.

        Users without any history all get the same fallback answer, so they share one key (the id is
        not part of it): a flood of unknown ids costs one entry, not one each.
        """
        items, stamps = history.items[0], history.timestamps[0]
        behaviour = self.recommender.behaviour
        pushed = behaviour.pushed_as_of() if isinstance(behaviour, OnlineBehaviour) else None
        if not len(items):
            return ("fallback", now, pushed, *request)
        tail = (items[-CACHE_TAIL:].tobytes(), stamps[-CACHE_TAIL:].tobytes())
        return (history.user_ids[0], len(items), tail, now, pushed, *request)

    def now(self, history: Histories) -> int:
        """The moment to describe: just after the latest event known (``events`` clock) or the time."""
        if self.clock == "wall":
            return max(int(time.time()), self.as_of)
        stamps = history.timestamps[0]
        return max(self.as_of, int(stamps.max()) + 1 if len(stamps) else self.as_of)

    # -- item metadata ------------------------------------------------------------------------
    def allowed(self, expression: str | None) -> np.ndarray | None:
        """Boolean mask over the catalog for ``category:jazz,tag:live`` (all clauses must hold)."""
        if not expression:
            return None
        mask = self._filters.get(expression)
        if mask is not None:
            return mask
        items = self.recommender.items
        mask = np.ones(len(self.recommender.catalog), dtype=bool)
        for clause in expression.split(","):
            key, sep, value = clause.strip().partition(":")
            if not sep or not value.strip():
                raise FilterError(f"'{clause}' is not key:value (e.g. category:jazz)")
            column = FILTER_KEYS.get(key.strip().lower())
            if column is None:
                raise FilterError(f"unknown filter key '{key}'; known: {', '.join(FILTER_KEYS)}")
            if column in items.columns:
                matches = items[column].list.contains(value.strip()).fill_null(False).to_numpy()
            else:
                matches = np.zeros(len(mask), dtype=bool)
            mask &= matches
        if len(self._filters) < 1024:
            self._filters[expression] = mask
        return mask

    def load_encoder(self) -> QueryEncoder:
        """The run's query encoder (the compressed CPU encoder the run embedded its catalog with, when it
        has one), loaded on first use: seconds, so callers wait for it apart from the request deadline."""
        from recsys.embeddings import load_query_encoder

        with self._encoder_lock:
            if self._encoder is None:
                recorded = self.run_dir / "embeddings" / "encoder.json"
                backend = json.loads(recorded.read_text())["backend"] if recorded.exists() else "torch"
                # one request's query is small: one thread each, workers scale with --workers
                config = self.config.embeddings.model_copy(update={"onnx_threads": 1})
                encoder_dir = self.run_dir / "encoder"
                self._encoder = load_query_encoder(
                    encoder_dir / "model", encoder_dir / "onnx", config, backend
                )
            return self._encoder

    def encode_query(self, text: str) -> np.ndarray:
        """``text`` as the run encodes queries: [1, dim], from a bounded cache of recent queries."""
        return self.load_encoder().encode(text)[None, :]

    def close(self) -> None:
        if self.experiment is not None:
            for arm in self.experiment.arms.values():
                if arm is not self:
                    arm.store.close()
        self.store.close()


@dataclass
class ActiveExperiment:
    """A running experiment as a worker serves it: its definition and the loaded state of each arm
    (the promoted state itself for an arm whose run is the promoted one)."""

    definition: Experiment
    arms: dict[str, ServingState]


_EMPTY = np.zeros(0, dtype=np.int64)


def load_state(settings: ServingSettings, config: Config) -> ServingState:
    """The promoted run of the runs folder, loaded whole and verified, then pushed to the online store
    if it is not there yet, and with a running experiment each arm's run besides: a run that fails to
    load leaves serving and the store as they were."""
    runs_dir = settings.runs(config)
    state = load_run(RunStore(runs_dir).current_dir(), settings, config, publish=True)
    try:
        definition = active_experiment(runs_dir)
        if definition is not None:
            state.experiment = load_experiment(definition, state, settings, config)
    except BaseException:
        state.close()
        raise
    return state


def load_experiment(
    definition: Experiment, promoted: ServingState, settings: ServingSettings, config: Config
) -> ActiveExperiment:
    """Each arm's run loaded beside the promoted one (which serves any arm naming it)."""
    experiments = ExperimentStore(settings.runs(config))
    arms: dict[str, ServingState] = {}
    try:
        for arm in definition.arms:
            run_id = experiments.resolve(arm)
            loaded = [state for state in (promoted, *arms.values()) if state.run_id == run_id]
            arms[arm.name] = (
                loaded[0] if loaded else load_run(promoted.run_dir.parent / run_id, settings, config, False)
            )
    except BaseException:
        for state in arms.values():
            if state is not promoted:
                state.store.close()
        raise
    log.info("experiment %s: %d arms loaded", definition.name, len(arms))
    return ActiveExperiment(definition, arms)


def load_run(run_dir: Path, settings: ServingSettings, config: Config, publish: bool) -> ServingState:
    """One run loaded whole. ``publish``: push it to the online store unless the store holds it; else
    (an experiment's arm) it reads the store's state as it is, which must have its feature definitions."""
    import torch

    from feature_store.online import open_online_store

    torch.set_num_threads(1)  # one request's work is small: threads only contend with other workers
    runs_dir = settings.runs(config)
    if not publish and not (run_dir / "manifest.json").exists():
        raise ExperimentError(f"experiment arm: run {run_dir.name} not found under {runs_dir}")
    run_config = serving_config(run_dir, config)
    items = pl.read_parquet(run_dir / "data" / "items.parquet")
    recommender = load_recommender(run_dir)  # every model of the run, before the store is touched
    recommender.config = run_config
    events = pl.read_parquet(run_dir / "data" / "interactions.parquet", columns=["user_id", "item_id", "ts"])
    histories = Histories.from_interactions(events, recommender.catalog)
    if publish:
        ensure_published(run_dir, run_config)
    store = open_online_store(run_config.features, runs_dir)
    try:
        held = store.read_meta().get("definitions")
        if not publish and held != store.definitions_version:
            raise ExperimentError(
                f"run {run_dir.name}: its feature definitions ({store.definitions_version}) differ from "
                f"those the online store holds ({held}, the promoted run's); an experiment's arms must "
                "share them"
            )
        recommender.behaviour = OnlineBehaviour(store, items, run_config.features)
        as_of = int(store.read_meta().get("as_of", 0))
    except BaseException:
        store.close()
        raise
    semantic = [source for source in recommender.sources if isinstance(source, SemanticSource)]
    index = semantic[0].index if semantic else load_index(run_dir / "index")
    titles = items["title"].cast(pl.String).to_list() if "title" in items.columns else [None] * items.height
    data_until = int(events["ts"].max()) if events.height else 0  # type: ignore[arg-type]
    return ServingState(
        run_id=run_dir.name,
        run_dir=run_dir,
        config=run_config,
        recommender=recommender,
        store=store,
        index=index,
        histories={
            user: (items_, stamps)
            for user, items_, stamps in zip(
                histories.user_ids, histories.items, histories.timestamps, strict=True
            )
        },
        data_until=data_until,
        as_of=max(as_of, data_until + 1),
        titles=titles,
        clock=settings.clock,
        cache=ResultCache(settings.cache_size, settings.cache_bytes),
    )


class StateHolder:
    """The current state behind one reference; reloads are serialized and never block requests."""

    def __init__(self, settings: ServingSettings, config: Config) -> None:
        self.settings = settings
        self.config = config
        self.current: ServingState | None = None
        self._reload_lock = asyncio.Lock()

    async def reload(self) -> tuple[str | None, str]:
        """Load the promoted run off the event loop and swap it in; returns (previous, new) run ids."""
        import anyio.to_thread

        async with self._reload_lock:
            previous = self.current.run_id if self.current else None
            state = await anyio.to_thread.run_sync(load_state, self.settings, self.config)
            self.current = state
            return previous, state.run_id

    async def follow_store(self, on_reload: Any) -> None:
        """Reload when the online store holds another run (another worker, or the nightly job, pushed it),
        or an experiment started or stopped."""
        import anyio.to_thread

        interval = self.settings.sync_interval_s
        runs_dir = self.settings.runs(self.config)
        while interval > 0:
            await asyncio.sleep(interval)
            try:
                pushed = await anyio.to_thread.run_sync(store_run_id, self.config, runs_dir)
                wanted = await anyio.to_thread.run_sync(active_experiment, runs_dir)
                current = self.current
                if current is None:
                    continue
                serving = current.experiment.definition if current.experiment else None
                if (pushed is not None and pushed != current.run_id) or wanted != serving:
                    previous, new = await self.reload()
                    on_reload(previous, new)
            except Exception:  # keep serving the state we have; the next check tries again
                log.exception("checking the online store for a newer run failed")
