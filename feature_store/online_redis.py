"""The Redis online store: records as strings per generation, the event log as one stream.

Writers serialize through a Redis lock (``<prefix>:lock``, redis-py's token lock), so writers on
every host take turns; each write is one MULTI/EXEC (records, meta, log entries and event ids
together). A push fills a new generation while holding the lock and switches
``<prefix>:generation`` to it in one MULTI, so readers see the old or the new state whole.
The log (``<prefix>:events``) and its id set (``<prefix>:event_ids``) outlive generations, and so
does the exposure log of online experiments: ``<prefix>:exposures`` (a stream), its index by
recommendation id (``<prefix>:exposure_ids``), each user's latest exposure per experiment
(``<prefix>:exposure_latest``) and the attributed events (``<prefix>:outcomes``, a stream).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, cast

from feature_store.online_store import (
    FORMAT,
    KEY_SEPARATOR,
    Exposure,
    LoggedEvent,
    OnlineStore,
    OnlineStoreBusy,
    OnlineStoreError,
    Outcome,
    Row,
    chunks,
    user_key_prefix,
)
from recsys.config import FeaturesConfig

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for the lock before giving up (:class:`OnlineStoreBusy`)."""
LOCK_TIMEOUT_S = 600.0
"""The lock frees itself after this long should its holder die (a push must finish within it)."""
GLOB_SPECIAL = str.maketrans({char: "\\" + char for char in "*?[]\\"})


def _text(value: float | None) -> str:
    return "" if value is None else repr(value)


def _exposure_json(exposure: Exposure) -> str:
    return json.dumps({**asdict(exposure), "items": list(exposure.items)}, separators=(",", ":"))


def _index_fields(entry: Exposure | Outcome) -> dict[str, str]:
    """What forget() and expire() select exposure-log entries by."""
    return {"user_id": entry.user_id, "ts": str(entry.ts)}


def _exposure(raw: str) -> Exposure:
    fields = json.loads(raw)
    return Exposure(**{**fields, "items": tuple(fields["items"])})


class RedisOnlineStore(OnlineStore):
    """Redis strings under ``<prefix>:<generation>:<view>:<key>`` and a stream of accepted events."""

    CHUNK = 10_000

    def __init__(self, config: FeaturesConfig, url: str, prefix: str) -> None:
        super().__init__(config)
        import redis

        self.url, self.prefix = url, prefix
        self._client = redis.Redis.from_url(url, decode_responses=True)
        try:
            self._client.ping()
        except redis.RedisError as error:
            raise OnlineStoreError(f"redis online store at {url} unreachable ({error})") from None
        self._held = threading.local()
        self._log = f"{prefix}:events"
        self._ids = f"{prefix}:event_ids"
        self._exposures = f"{prefix}:exposures"
        self._exposure_ids = f"{prefix}:exposure_ids"
        self._latest = f"{prefix}:exposure_latest"
        self._outcomes = f"{prefix}:outcomes"

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        depth = getattr(self._held, "depth", 0)
        if depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        lock = self._client.lock(
            f"{self.prefix}:lock", timeout=LOCK_TIMEOUT_S, sleep=0.005, blocking_timeout=BUSY_TIMEOUT_S
        )
        if not lock.acquire():
            raise OnlineStoreBusy(f"redis online store {self.prefix}: lock held over {BUSY_TIMEOUT_S:.0f} s")
        self._held.depth = 1
        try:
            yield
        finally:
            self._held.depth = 0
            lock.release()

    def _generation(self) -> str:
        return str(self._client.get(f"{self.prefix}:generation") or "0")

    def _write(self, rows: list[Row], meta: dict[str, str], events: list[LoggedEvent]) -> None:
        with self.exclusive():  # the generation cannot switch under the write
            base = f"{self.prefix}:{self._generation()}"
            batch = self._put(self._client.pipeline(transaction=True), base, rows)
            if meta:
                batch.hset(f"{base}:_meta", mapping=cast(Any, meta))
            for event in events:
                fields = {
                    "event_id": event.event_id or "",
                    "user_id": event.user_id,
                    "item_id": event.item_id,
                    "ts": str(event.ts),
                    "event": event.event,
                    "weight": _text(event.weight),
                    "rating": _text(event.rating),
                    "category": event.category or "",
                }
                batch.xadd(self._log, cast(Any, fields))
                if event.event_id:
                    batch.hset(self._ids, event.event_id, str(event.ts))
            batch.execute()

    def replace_all(self, rows: list[Row], meta: Mapping[str, str]) -> None:
        with self.exclusive():
            current = self._generation()
            generation = str(self._client.incr(f"{self.prefix}:generation_counter"))
            base = f"{self.prefix}:{generation}"
            try:  # the new generation is invisible until the switch below
                for chunk in chunks(rows, self.CHUNK):
                    self._put(self._client.pipeline(transaction=False), base, list(chunk)).execute()
                switch = self._client.pipeline(transaction=True)
                switch.hset(f"{base}:_meta", mapping=cast(Any, {**meta, "format": FORMAT}))
                switch.set(f"{self.prefix}:generation", generation)
                switch.execute()
            except BaseException:
                self._drop_generation(generation)
                raise
            self._drop_older_than(int(current))

    def _put(self, pipe: Any, base: str, rows: list[Row]) -> Any:
        for view, key, value, updated_at in rows:
            pipe.set(f"{base}:{view}:{key}", value)
            pipe.zadd(f"{base}:_updated:{view}", {key: updated_at})
        return pipe

    def _drop_generation(self, generation: str) -> None:
        names = list(self._client.scan_iter(match=f"{self.prefix}:{generation}:*", count=1000))
        for chunk in chunks(names, self.CHUNK):
            self._client.unlink(*chunk)

    def _drop_older_than(self, keep: int) -> None:
        """Delete generations before ``keep`` (the one readers may still hold is kept one push longer)."""
        for generation in range(max(keep - 3, 0), keep):
            self._drop_generation(str(generation))

    def _read(self, view: str, keys: list[str]) -> list[str | None]:
        base = f"{self.prefix}:{self._generation()}"
        return cast(list[str | None], self._client.mget([f"{base}:{view}:{key}" for key in keys]))

    def _read_meta(self) -> dict[str, str]:
        return cast(dict[str, str], self._client.hgetall(f"{self.prefix}:{self._generation()}:_meta"))

    # -- the event log -------------------------------------------------------------------------
    def _entries(self, stream: str | None = None) -> Iterator[tuple[str, dict[str, str]]]:
        """The entries of ``stream`` (default: the event log), oldest first, a page at a time."""
        start = "-"
        while True:
            page = cast(
                list[Any], self._client.xrange(stream or self._log, min=start, max="+", count=self.CHUNK)
            )
            yield from page
            if len(page) < self.CHUNK:
                return
            start = f"({page[-1][0]}"

    @staticmethod
    def _event(fields: dict[str, str]) -> LoggedEvent:
        return LoggedEvent(
            event_id=fields["event_id"] or None,
            user_id=fields["user_id"],
            item_id=fields["item_id"],
            ts=int(fields["ts"]),
            event=fields["event"],
            weight=float(fields["weight"]),
            rating=float(fields["rating"]) if fields["rating"] else None,
            category=fields["category"] or None,
        )

    def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        found = cast(list[str | None], self._client.hmget(self._ids, list(event_ids)))
        return {event_id for event_id, ts in zip(event_ids, found, strict=True) if ts is not None}

    def logged_events(self, since: int | None = None, user_id: str | None = None) -> list[LoggedEvent]:
        events = (self._event(fields) for _, fields in self._entries())
        return [
            event
            for event in events
            if (since is None or event.ts >= since) and (user_id is None or event.user_id == user_id)
        ]

    def _drop_entries(self, keep: Any) -> int:
        """Delete the log entries (and their event ids) for which ``keep(fields)`` is false."""
        doomed = [(entry, fields) for entry, fields in self._entries() if not keep(fields)]
        batch = self._client.pipeline(transaction=True)
        for chunk in chunks(doomed, self.CHUNK):
            batch.xdel(self._log, *(entry for entry, _ in chunk))
            ids = [fields["event_id"] for _, fields in chunk if fields["event_id"]]
            if ids:
                batch.hdel(self._ids, *ids)
        batch.execute()
        return len(doomed)

    def _expire(self, cutoffs: dict[str, int], log_cutoff: int) -> int:
        with self.exclusive():
            base = f"{self.prefix}:{self._generation()}"
            stale = {
                view: cast(
                    list[str], self._client.zrangebyscore(f"{base}:_updated:{view}", "-inf", f"({cutoff}")
                )
                for view, cutoff in cutoffs.items()
            }
            batch = self._client.pipeline(transaction=True)
            for view, keys in stale.items():
                for chunk in chunks(keys, self.CHUNK):
                    batch.unlink(*(f"{base}:{view}:{key}" for key in chunk))
                    batch.zrem(f"{base}:_updated:{view}", *chunk)
            batch.execute()
            dropped = self._drop_entries(lambda fields: int(fields["ts"]) >= log_cutoff)
            dropped += self._drop_exposures(lambda fields: int(fields["ts"]) >= log_cutoff)
        return sum(len(keys) for keys in stale.values()) + dropped

    def _user_names(self, user_id: str, generation: str | None = None) -> list[tuple[str, str, str]]:
        """(redis key, view, entity key) of every record keyed by ``user_id`` (in ``generation``, or all)."""
        prefix = user_key_prefix(user_id)
        views = set(self.user_views)
        found = []
        match = f"{self.prefix}:{generation or '*'}:*{user_id.translate(GLOB_SPECIAL)}*"
        for name in self._client.scan_iter(match=match, count=1000):
            stored, _, rest = name[len(self.prefix) + 1 :].partition(":")
            view, _, key = rest.partition(":")
            if stored.isdigit() and view in views and (key == user_id or key.startswith(prefix)):
                found.append((name, f"{self.prefix}:{stored}:_updated:{view}", key))
        return found

    def held_about(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        held: dict[str, list[dict[str, Any]]] = {}
        names = sorted(self._user_names(user_id, self._generation()), key=lambda found: found[2])
        values = cast(list[str | None], self._client.mget([name for name, _, _ in names])) if names else []
        for (name, _, _), value in zip(names, values, strict=True):
            if value is not None:
                view = name[len(self.prefix) + 1 :].split(":", 2)[1]
                held.setdefault(view, []).append(json.loads(value))
        return held

    def forget(self, user_id: str) -> int:
        """Every generation still stored is scrubbed, not only the current one."""
        with self.exclusive():
            names = self._user_names(user_id)
            doomed: dict[str, list[str]] = {}
            for _, updated, key in names:
                doomed.setdefault(updated, []).append(key)
            batch = self._client.pipeline(transaction=True)
            for chunk in chunks([name for name, _, _ in names], self.CHUNK):
                batch.unlink(*chunk)
            for updated, keys in doomed.items():
                for chunk in chunks(keys, self.CHUNK):
                    batch.zrem(updated, *chunk)
            batch.execute()
            dropped = self._drop_entries(lambda fields: fields["user_id"] != user_id)
            dropped += self._drop_exposures(lambda fields: fields["user_id"] != user_id)
        return len(names) + dropped

    # -- the exposure log ---------------------------------------------------------------------------
    def log_exposures(self, exposures: Sequence[Exposure]) -> None:
        with self.exclusive():  # forget() and expire() scan the log under the lock: never miss one
            known = self.exposures_by_id([exposure.recommendation_id for exposure in exposures])
            batch = self._client.pipeline(transaction=True)
            for exposure in exposures:
                if exposure.recommendation_id in known:
                    continue
                raw = _exposure_json(exposure)
                known[exposure.recommendation_id] = exposure
                batch.xadd(self._exposures, cast(Any, {"raw": raw, **_index_fields(exposure)}))
                batch.hset(self._exposure_ids, exposure.recommendation_id, raw)
                batch.hset(self._latest, KEY_SEPARATOR.join((exposure.experiment, exposure.user_id)), raw)
            batch.execute()

    def log_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        with self.exclusive():
            batch = self._client.pipeline(transaction=True)
            for outcome in outcomes:
                raw = json.dumps(asdict(outcome), separators=(",", ":"))
                batch.xadd(self._outcomes, cast(Any, {"raw": raw, **_index_fields(outcome)}))
            batch.execute()

    def exposures(self, experiment: str) -> list[Exposure]:
        found = (_exposure(fields["raw"]) for _, fields in self._entries(self._exposures))
        return [exposure for exposure in found if exposure.experiment == experiment]

    def exposures_by_id(self, recommendation_ids: Sequence[str]) -> dict[str, Exposure]:
        if not recommendation_ids:
            return {}
        raws = cast(list[str | None], self._client.hmget(self._exposure_ids, list(recommendation_ids)))
        return {rid: _exposure(raw) for rid, raw in zip(recommendation_ids, raws, strict=True) if raw}

    def latest_exposure(self, experiment: str, user_id: str) -> Exposure | None:
        raw = cast(str | None, self._client.hget(self._latest, KEY_SEPARATOR.join((experiment, user_id))))
        return None if raw is None else _exposure(raw)

    def outcomes(self, experiment: str) -> list[Outcome]:
        found = (Outcome(**json.loads(fields["raw"])) for _, fields in self._entries(self._outcomes))
        return [outcome for outcome in found if outcome.experiment == experiment]

    def user_exposures(self, user_id: str) -> list[Exposure]:
        entries = self._entries(self._exposures)
        return [_exposure(fields["raw"]) for _, fields in entries if fields["user_id"] == user_id]

    def user_outcomes(self, user_id: str) -> list[Outcome]:
        entries = self._entries(self._outcomes)
        return [Outcome(**json.loads(fields["raw"])) for _, fields in entries if fields["user_id"] == user_id]

    def _drop_exposures(self, keep: Any) -> int:
        """Delete exposures (with their index entries) and outcomes for which ``keep(fields)`` is false;
        a user's latest exposure goes when it does."""
        doomed = [(entry, fields) for entry, fields in self._entries(self._exposures) if not keep(fields)]
        lost = [(entry, fields) for entry, fields in self._entries(self._outcomes) if not keep(fields)]
        batch = self._client.pipeline(transaction=True)
        for chunk in chunks(doomed, self.CHUNK):
            batch.xdel(self._exposures, *(entry for entry, _ in chunk))
            gone = [_exposure(fields["raw"]) for _, fields in chunk]
            batch.hdel(self._exposure_ids, *(exposure.recommendation_id for exposure in gone))
        for chunk in chunks(lost, self.CHUNK):
            batch.xdel(self._outcomes, *(entry for entry, _ in chunk))
        batch.execute()
        latest = cast(dict[str, str], self._client.hgetall(self._latest))
        stale = [key for key, raw in latest.items() if not keep(_index_fields(_exposure(raw)))]
        if stale:
            self._client.hdel(self._latest, *stale)
        return len(doomed) + len(lost)

    def close(self) -> None:
        self._client.close()
