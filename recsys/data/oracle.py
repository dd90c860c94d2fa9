"""Ranking by the generator's own hidden state: how far any recommender could get on a generated catalog.

A regime's events are drawn from a :class:`~recsys.data.demo.RegimeWorld`: each session picks one of
its user's audience's topics, then each event is the previous item's sequel (with probability
``sequel``) or a draw from the topic (by base popularity among the items already out, or near an
item's release). This module ranks, for each test user, every unseen item by its expected number
of occurrences in the user's future under that process, knowing (by :data:`Knowledge`) what no
recommender can see: the user's audiences and how far they have drifted, every item's topic, base
popularity and sequel.

It is an optimistic reference, not a bound: it takes each user's number of future events as given,
and it approximates (the session in progress at the cut draws as of the cut, later sessions as of
moments spread evenly to the span's end; a sequel is followed even before its release). What it
scores on a cut, beside the best baseline's figure, says how much of a gap is there to take.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from recsys.catalog import Histories
from recsys.data.demo import DAY, START_TS, RegimeWorld

Knowledge = Literal["full", "released", "observable"]
"""What the oracle knows. ``full``: the hidden state. ``released``: the same, but items released
after the cut count for nothing (how popular an unreleased item will be is in no data).
``observable``: as ``released``, and a user's tastes are the topics of their history (recency
weighted) rather than their audiences and drift: what a recommender could learn at best, short of
estimating popularity and sequels from counts."""

SESSION_STEPS = 32
"""Events of a session the expectations follow (a session's length is geometric; past this, noise)."""
RELEASE_AGES = 64
"""Quantiles of the release burst's age distribution that stand for it."""
HISTORY_HALF_LIFE = 10.0
"""Half-life, in events, of the history's topic shares in the ``observable`` oracle (as the recipe's
``retrieval.history_half_life_events``)."""
SESSION_TIMES = 8
"""Moments between the cut and the span's end that stand for when a user's next sessions start
(sessions are placed uniformly in time, so the future's are uniform after the cut)."""


class Oracle:
    """Expected future occurrences of each item under a :class:`RegimeWorld`, one user at a time."""

    def __init__(self, world: RegimeWorld) -> None:
        self.world = world
        self.members = world.by_topic()
        self.n_items = len(world.topic)
        ages = -np.log1p(-(np.arange(RELEASE_AGES) + 0.5) / RELEASE_AGES)
        self.release_ages = ages * world.shape.release_days * DAY

    def topic_draw(self, topic: int, t: float) -> np.ndarray:
        """[items] probability that a draw from ``topic`` at time ``t`` (seconds from START_TS) is
        each item: by base popularity among the items out, or near a release (the generator's rule)."""
        shape = self.world.shape
        members = self.members[topic]
        arrival = self.world.created[members]
        weight = self.world.popularity[members]
        cum = np.cumsum(weight)
        out = np.zeros(self.n_items)
        available = max(int(np.searchsorted(arrival, t, side="right")), 1)
        out[members[:available]] += (1.0 - shape.release_share) * weight[:available] / cum[available - 1]
        released = t - self.release_ages
        newest = np.maximum(np.searchsorted(arrival, released, side="right") - 1, 0)
        oldest = np.minimum(np.searchsorted(arrival, released - DAY, side="left"), newest)
        burst = np.zeros(len(members))
        for low, high in zip(oldest.tolist(), newest.tolist(), strict=True):
            burst[low : high + 1] += weight[low : high + 1] / weight[low : high + 1].sum()
        out[members] += shape.release_share * burst / RELEASE_AGES
        return out

    def follow(self, dist: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """The next event's distribution after ``dist``: the sequel, or a fresh draw from ``fresh``."""
        moved = np.zeros(self.n_items)
        moved[self.world.sequel] = dist
        return self.world.shape.sequel * moved + (1.0 - self.world.shape.sequel) * fresh

    def taste(self, user: int, t: float, history: np.ndarray, knowledge: Knowledge) -> np.ndarray:
        """[items] distribution of the first event of ``user``'s next session after time ``t``."""
        later = t + (np.arange(SESSION_TIMES) + 0.5) / SESSION_TIMES * max(self.world.horizon - t, 0.0)
        if knowledge == "observable":
            topics = self.world.topic[history]
            weights = 0.5 ** (np.arange(len(topics))[::-1] / HISTORY_HALF_LIFE)
            shares = {
                int(topic): weights[topics == topic].sum() / weights.sum() for topic in np.unique(topics)
            }
        else:
            shares = self.topic_shares(user, t)
        out = np.mean([self.draw(shares, float(moment)) for moment in later], axis=0)
        return out if knowledge == "full" else np.where(self.world.created <= t, out, 0.0)

    def topic_shares(self, user: int, t: float) -> dict[int, float]:
        """Each topic's chance of being the topic of ``user``'s session at time ``t``."""
        world = self.world
        moved = world.shape.drift * float(np.clip(t / world.horizon * world.drift_speed[user], 0.0, 1.0))
        liked = world.audience_topics.shape[1]
        shares: dict[int, float] = {}
        for audience, share in (
            (world.first_audience[user], 1.0 - moved),
            (world.last_audience[user], moved),
        ):
            for topic in world.audience_topics[audience].tolist():
                shares[int(topic)] = shares.get(int(topic), 0.0) + share / liked
        return shares

    def draw(self, shares: dict[int, float], t: float) -> np.ndarray:
        """[items] a draw at time ``t`` from a topic picked with the chances ``shares`` gives."""
        out = np.zeros(self.n_items)
        for topic, share in shares.items():
            out += share * self.topic_draw(topic, t)
        return out

    def expected(
        self,
        user: int,
        history: np.ndarray,
        t: float,
        future_events: float,
        continue_session: bool,
        knowledge: Knowledge = "full",
    ) -> np.ndarray:
        """[items] expected occurrences among ``future_events`` events of ``user`` after time ``t``,
        ``history`` (item indices, oldest first) seen; with ``continue_session``, the first may continue
        the last item's session (the per-user protocol's cut)."""
        stay = 1.0 - 1.0 / self.world.shape.session_length
        out = np.zeros(self.n_items)
        continuing = 0.0
        if continue_session and len(history):
            last_item = int(history[-1])
            fresh = self.topic_draw(int(self.world.topic[last_item]), t)
            dist = np.zeros(self.n_items)
            dist[last_item] = 1.0
            reach = 1.0
            for _ in range(min(SESSION_STEPS, int(np.ceil(future_events)))):
                reach *= stay
                dist = self.follow(dist, fresh)
                out += reach * dist
                continuing += reach
        taste = self.taste(user, t, history, knowledge)
        session = np.zeros(self.n_items)
        dist, weight = taste, 1.0
        for _ in range(SESSION_STEPS):
            session += weight * dist
            dist = self.follow(dist, taste)
            weight *= stay
        out += max(future_events - continuing, 0.0) * session / session.sum()
        return out


def oracle_topk(
    world: RegimeWorld,
    catalog_ids: np.ndarray,
    histories: Histories,
    future_events: np.ndarray,
    k: int,
    continue_sessions: bool,
    cutoff: int | None = None,
    knowledge: Knowledge = "full",
) -> np.ndarray:
    """[users, k] catalog indices ranked by :meth:`Oracle.expected`, seen items left out.

    ``future_events[u]``: events user ``u`` has after the cut. The cut is each user's last event
    (``continue_sessions``: the per-user protocol, where the future starts inside the user's last
    session) or ``cutoff`` (the global protocol: the moment everyone's future starts).
    """
    oracle = Oracle(world)
    world_of_catalog = np.asarray([int(item_id[1:]) for item_id in catalog_ids], dtype=np.int64)
    out = np.full((len(histories), k), -1, dtype=np.int64)
    for row, (user_id, items, stamps) in enumerate(
        zip(histories.user_ids, histories.items, histories.timestamps, strict=True)
    ):
        moment = int(stamps[-1]) if cutoff is None else cutoff
        expected = oracle.expected(
            int(user_id[1:]),
            world_of_catalog[items],
            float(moment - START_TS),
            float(future_events[row]),
            continue_sessions,
            knowledge,
        )
        scores = expected[world_of_catalog]
        scores[items] = -np.inf
        top = np.argsort(-scores, kind="stable")[:k]
        top = top[np.isfinite(scores[top])]
        out[row, : len(top)] = top
    return out
