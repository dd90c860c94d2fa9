"""Group commit of exposures: concurrent answers share store writes, each waits for its own."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from feature_store.online_sqlite import SQLiteOnlineStore
from feature_store.online_store import Exposure
from recsys.config import FeaturesConfig
from serving.exposures import ExposureWriter


class CountingStore(SQLiteOnlineStore):
    """The real SQLite store, counting its exposure writes."""

    writes = 0

    def log_exposures(self, exposures: Sequence[Exposure]) -> None:
        self.writes += 1
        super().log_exposures(exposures)


def exposure(n: int) -> Exposure:
    return Exposure(f"r{n}", "exp", "control", "run-a", f"u{n}", 100, ("i1",))


def test_concurrent_answers_share_writes_and_each_is_durable_when_it_returns(tmp_path: Path) -> None:
    store = CountingStore(FeaturesConfig(), tmp_path / "online.sqlite")
    writer = ExposureWriter()

    async def answer(n: int) -> None:
        await writer.write(store, [exposure(n)])
        assert store.exposures_by_id([f"r{n}"])  # in the store when the answer may go out

    async def main() -> None:
        await asyncio.gather(*(answer(n) for n in range(60)))
        await answer(60)  # a later answer, alone, still written

    asyncio.run(main())
    assert len(store.exposures("exp")) == 61
    assert store.writes <= 3  # the first alone, the rest that queued meanwhile, the last alone
    store.close()


def test_a_failing_store_fails_every_waiting_answer(tmp_path: Path) -> None:
    store = SQLiteOnlineStore(FeaturesConfig(), tmp_path / "online.sqlite")
    store.close()
    writer = ExposureWriter()

    async def main() -> list[BaseException | None]:
        answers = (writer.write(store, [exposure(n)]) for n in range(5))
        return await asyncio.gather(*answers, return_exceptions=True)

    assert all(isinstance(result, sqlite3.ProgrammingError) for result in asyncio.run(main()))
    with pytest.raises(sqlite3.ProgrammingError):
        asyncio.run(writer.write(store, [exposure(9)]))
