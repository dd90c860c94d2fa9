"""The built-in demo catalog: a seeded generator whose right answers are known.

Items belong to latent topics and carry English titles and 2-4 sentence descriptions
drawn from per-topic vocabularies. Users belong to audiences that like a few topics
which are *not* related in language (say jazz, gardening and astronomy), so a pretrained
encoder cannot know they go together but one fine-tuned on the logs can. Tastes drift
over the 90 days, popularity is Zipf-skewed, users come back in sessions where items
follow "sequels" (co-consumption), and new items keep arriving (cold-start items).
Everything is vectorized with numpy: 100k items / 5M events take well under 2 minutes.

The default catalog is dense like the one real dataset we have (movie ratings). The other
*regimes* reshape the same topics, audiences and texts into the catalogs real products
show, so that a recipe can be checked on each before it meets one: ``releases`` (items
arrive all the time with a burst of popularity that fades), ``shop`` (most users with one
or two events, a long tail of rarely seen items), ``sessions`` (long sessions of related
items, chained by sequels) and ``drift`` (each user's tastes move slowly to other topics).
In every regime an item's text is drawn from its topic's vocabulary and users consume by
topic, so text tells who will consume an item, even one nobody has consumed yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import polars as pl

from recsys.artifacts import atomic_write_parquet

DAY = 86_400
START_TS = 1_750_000_000  # 2025-06-15; fixed so that output is deterministic

TOPICS: dict[str, list[str]] = {
    "baking": [
        "sourdough",
        "croissant",
        "oven",
        "flour",
        "pastry",
        "yeast",
        "crust",
        "brioche",
        "dough",
        "butter",
    ],
    "astronomy": [
        "galaxy",
        "telescope",
        "nebula",
        "comet",
        "orbit",
        "planet",
        "star",
        "eclipse",
        "asteroid",
        "cosmos",
    ],
    "gardening": [
        "tomato",
        "compost",
        "seedling",
        "greenhouse",
        "soil",
        "orchard",
        "rose",
        "hedge",
        "mulch",
        "harvest",
    ],
    "jazz": [
        "saxophone",
        "trumpet",
        "swing",
        "bebop",
        "quartet",
        "improvisation",
        "ballad",
        "club",
        "rhythm",
        "blues",
    ],
    "football": [
        "striker",
        "goal",
        "stadium",
        "league",
        "midfield",
        "penalty",
        "coach",
        "derby",
        "keeper",
        "season",
    ],
    "sailing": ["yacht", "harbor", "mast", "regatta", "tide", "anchor", "keel", "voyage", "compass", "sail"],
    "chess": [
        "gambit",
        "rook",
        "bishop",
        "endgame",
        "opening",
        "checkmate",
        "pawn",
        "grandmaster",
        "tournament",
        "knight",
    ],
    "photography": [
        "lens",
        "aperture",
        "portrait",
        "exposure",
        "shutter",
        "darkroom",
        "landscape",
        "film",
        "tripod",
        "flash",
    ],
    "cycling": [
        "bicycle",
        "peloton",
        "climb",
        "saddle",
        "gear",
        "sprint",
        "velodrome",
        "pedal",
        "tour",
        "chain",
    ],
    "history": [
        "empire",
        "dynasty",
        "revolution",
        "archive",
        "monarch",
        "battle",
        "treaty",
        "castle",
        "chronicle",
        "ruins",
    ],
    "coding": [
        "compiler",
        "algorithm",
        "database",
        "server",
        "python",
        "debugger",
        "kernel",
        "network",
        "framework",
        "cloud",
    ],
    "wine": [
        "vineyard",
        "vintage",
        "cellar",
        "grape",
        "merlot",
        "tasting",
        "barrel",
        "sommelier",
        "harvest",
        "bottle",
    ],
    "hiking": [
        "trail",
        "summit",
        "backpack",
        "ridge",
        "canyon",
        "glacier",
        "campfire",
        "boots",
        "valley",
        "forest",
    ],
    "fashion": [
        "runway",
        "couture",
        "fabric",
        "designer",
        "silk",
        "tailor",
        "collection",
        "denim",
        "boutique",
        "style",
    ],
    "painting": [
        "canvas",
        "watercolor",
        "brush",
        "palette",
        "fresco",
        "oil",
        "gallery",
        "sketch",
        "easel",
        "pigment",
    ],
    "medicine": [
        "surgeon",
        "clinic",
        "vaccine",
        "diagnosis",
        "patient",
        "therapy",
        "hospital",
        "nurse",
        "virus",
        "cure",
    ],
    "finance": [
        "stock",
        "market",
        "investor",
        "bond",
        "portfolio",
        "bank",
        "dividend",
        "trader",
        "crash",
        "budget",
    ],
    "birds": [
        "owl",
        "eagle",
        "sparrow",
        "migration",
        "nest",
        "feather",
        "heron",
        "falcon",
        "songbird",
        "wetland",
    ],
    "cars": [
        "engine",
        "racing",
        "garage",
        "turbo",
        "driver",
        "motor",
        "rally",
        "piston",
        "roadster",
        "highway",
    ],
    "poetry": ["verse", "sonnet", "rhyme", "stanza", "poet", "lyric", "metaphor", "haiku", "ode", "ballad"],
    "robots": [
        "robot",
        "sensor",
        "automation",
        "android",
        "circuit",
        "drone",
        "machine",
        "servo",
        "factory",
        "laboratory",
    ],
    "tea": [
        "teapot",
        "matcha",
        "oolong",
        "leaves",
        "ceremony",
        "kettle",
        "herbal",
        "infusion",
        "plantation",
        "cup",
    ],
    "volcanoes": [
        "lava",
        "eruption",
        "magma",
        "crater",
        "ash",
        "geologist",
        "island",
        "tremor",
        "basalt",
        "caldera",
    ],
    "theatre": [
        "stage",
        "actor",
        "playwright",
        "curtain",
        "rehearsal",
        "audience",
        "drama",
        "comedy",
        "director",
        "script",
    ],
}

ADJECTIVES = [
    "quiet",
    "hidden",
    "golden",
    "forgotten",
    "wild",
    "modern",
    "little",
    "endless",
    "secret",
    "brave",
    "curious",
    "ancient",
    "bright",
    "lonely",
    "simple",
    "restless",
    "gentle",
    "strange",
    "last",
    "first",
]
TITLE_TEMPLATES = [
    "The {adj} {n1}",
    "{adj} {n1} and the {n2}",
    "A Guide to the {n1}",
    "The {n1} of {n2}",
    "Notes on the {adj} {n1}",
    "Beyond the {n1}",
    "{n1} Stories",
    "The Art of the {n1}",
]
SENTENCES = [
    "A {adj} look at the {n1} and the {n2}.",
    "It follows a {n1} who discovers a {adj} {n2}.",
    "Readers learn how the {n1} shapes every {n2}.",
    "Full of {n1} lore, {n2} tips and {adj} moments.",
    "The story moves from the {n1} to a {adj} {n2}.",
    "An expert explains the {n1}, the {n2} and why they matter.",
    "Told with warmth, it celebrates the {adj} {n1}.",
]


Regime = Literal["default", "releases", "shop", "sessions", "drift"]
REGIMES: tuple[Regime, ...] = get_args(Regime)


@dataclass(frozen=True)
class DemoSpec:
    users: int = 2000
    items: int = 3000
    events: int = 120_000
    topics: int = 24
    days: int = 90
    seed: int = 7
    regime: Regime = "default"


@dataclass(frozen=True)
class _Shape:
    """How one regime's catalog behaves; every regime shares topics, audiences and texts."""

    new_share: float
    """Share of items created within the span (the rest are back catalog)."""
    zipf: float
    """Exponent of the items' base popularity: higher is a longer, thinner tail."""
    release_share: float
    """Share of draws that go to items near their release (the rest: by base popularity)."""
    release_days: float
    """Mean age in days of an item drawn at its release: how fast the burst fades."""
    session_length: float
    """Mean events per session."""
    gap_s: tuple[int, int]
    """Seconds between two events of a session (uniform in this range)."""
    sequel: float
    """Chance that an event is the previous item's sequel (co-visitation)."""
    drift: float
    """Share of a user's tastes that have moved to another audience's by the end of the span."""
    sparse_users: float
    """Share of users with one or two events; 0: every user's activity is lognormal."""
    purchase_share: float
    """Share of events that are purchases (the rest are views)."""


SHAPES: dict[Regime, _Shape] = {
    "releases": _Shape(
        new_share=0.85,
        zipf=0.9,
        release_share=0.85,
        release_days=2.0,
        session_length=3.0,
        gap_s=(60, 1800),
        sequel=0.15,
        drift=0.1,
        sparse_users=0.0,
        purchase_share=0.1,
    ),
    "shop": _Shape(
        new_share=0.3,
        zipf=1.4,
        release_share=0.1,
        release_days=7.0,
        session_length=1.5,
        gap_s=(30, 600),
        sequel=0.25,
        drift=0.1,
        sparse_users=0.7,
        purchase_share=0.3,
    ),
    "sessions": _Shape(
        new_share=0.5,
        zipf=0.9,
        release_share=0.3,
        release_days=3.0,
        session_length=15.0,
        gap_s=(20, 240),
        sequel=0.7,
        drift=0.1,
        sparse_users=0.0,
        purchase_share=0.05,
    ),
    "drift": _Shape(
        new_share=0.25,
        zipf=0.9,
        release_share=0.1,
        release_days=7.0,
        session_length=4.0,
        gap_s=(30, 900),
        sequel=0.3,
        drift=1.0,
        sparse_users=0.0,
        purchase_share=0.1,
    ),
}


def _pick(rng: np.random.Generator, words: list[str], size: int) -> np.ndarray:
    return np.asarray(words, dtype=object)[rng.integers(0, len(words), size)]


def _texts(
    rng: np.random.Generator, topic: np.ndarray, second: np.ndarray, names: list[str]
) -> tuple[list[str], list[str]]:
    """Titles and descriptions: mostly the item's topic words, sometimes a second topic's."""
    n = len(topic)
    vocab = [TOPICS[name] for name in names]
    titles, texts = [], []
    n_sentences = rng.integers(2, 5, n)
    for i in range(n):
        own, other = vocab[topic[i]], vocab[second[i]]
        words = own + own + other  # two thirds own topic
        title_words = _pick(rng, own, 2)
        title = TITLE_TEMPLATES[rng.integers(len(TITLE_TEMPLATES))].format(
            adj=ADJECTIVES[rng.integers(len(ADJECTIVES))].capitalize(),
            n1=str(title_words[0]).capitalize(),
            n2=str(title_words[1]).capitalize(),
        )
        sentences = []
        for template in rng.choice(SENTENCES, n_sentences[i], replace=False):
            nouns = _pick(rng, words, 2)
            sentences.append(
                template.format(adj=ADJECTIVES[rng.integers(len(ADJECTIVES))], n1=nouns[0], n2=nouns[1])
            )
        titles.append(title)
        texts.append(" ".join(sentences))
    return titles, texts


def _texts_vectorized(
    rng: np.random.Generator, topic: np.ndarray, second: np.ndarray, names: list[str]
) -> tuple[list[str], list[str]]:
    """The same kind of titles and descriptions as :func:`_texts`, with every draw made at once:
    ten times faster on 100k items. ``_texts`` stays as it is because its draws define the default
    catalog's bytes."""
    n = len(topic)
    vocab = np.asarray([TOPICS[name] for name in names], dtype=object)
    adjectives = np.asarray(ADJECTIVES, dtype=object)
    title_words = vocab[topic[:, None], rng.integers(0, vocab.shape[1], (n, 2))]
    title_template = rng.integers(0, len(TITLE_TEMPLATES), n)
    title_adjective = adjectives[rng.integers(0, len(ADJECTIVES), n)]
    n_sentences = rng.integers(2, 5, n)
    templates = np.argsort(rng.random((n, len(SENTENCES))), axis=1)[:, :4]  # without replacement
    adjective = adjectives[rng.integers(0, len(ADJECTIVES), (n, 4))]
    # Two thirds of the nouns come from the item's own topic, the rest from its second topic.
    source = np.where(rng.random((n, 4, 2)) < 2 / 3, topic[:, None, None], second[:, None, None])
    nouns = vocab[source, rng.integers(0, vocab.shape[1], (n, 4, 2))]
    titles, texts = [], []
    for i in range(n):
        titles.append(
            TITLE_TEMPLATES[title_template[i]].format(
                adj=title_adjective[i].capitalize(),
                n1=title_words[i, 0].capitalize(),
                n2=title_words[i, 1].capitalize(),
            )
        )
        texts.append(
            " ".join(
                SENTENCES[templates[i, j]].format(adj=adjective[i, j], n1=nouns[i, j, 0], n2=nouns[i, j, 1])
                for j in range(n_sentences[i])
            )
        )
    return titles, texts


def generate_demo(spec: DemoSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(items, interactions) in the input contract; the same spec always gives the same frames."""
    if spec.regime == "default":
        return _generate_default(spec)
    return _generate_regime(spec, SHAPES[spec.regime])


def _generate_default(spec: DemoSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The dense catalog; its output for a seed is frozen (tests and README figures rely on it)."""
    rng = np.random.default_rng(spec.seed)
    names = list(TOPICS)[: spec.topics] if spec.topics <= len(TOPICS) else list(TOPICS)
    n_topics = len(names)
    horizon = spec.days * DAY

    # Items: topic, popularity (Zipf within topic), arrival time, a "sequel" in the same topic.
    topic = rng.integers(0, n_topics, spec.items)
    second = np.where(rng.random(spec.items) < 0.3, rng.integers(0, n_topics, spec.items), topic)
    popularity = 1.0 / (1.0 + rng.permutation(spec.items)) ** 0.9
    is_new = rng.random(spec.items) < 0.25
    created = np.where(
        is_new, rng.integers(DAY, horizon - DAY, spec.items), -rng.integers(DAY, 365 * DAY, spec.items)
    )
    sequel = np.empty(spec.items, dtype=np.int64)
    for t in range(n_topics):
        members = np.flatnonzero(topic == t)
        if len(members):
            sequel[members] = rng.permutation(members)

    # Audiences: each likes a few topics chosen at random (unrelated in language).
    n_audiences = max(2, n_topics // 3)
    liked = min(3, n_topics)
    audience_topics = np.stack([rng.choice(n_topics, liked, replace=False) for _ in range(n_audiences)])
    user_audience = rng.integers(0, n_audiences, spec.users)
    drift_audience = rng.integers(0, n_audiences, spec.users)
    user_activity = rng.lognormal(0.0, 1.0, spec.users)

    # Sessions: user, start time, length; events are laid out position by position.
    mean_len = 4.0
    n_sessions = int(spec.events / mean_len * 1.1) + 1
    lengths = 1 + rng.poisson(mean_len - 1, n_sessions)
    cut = int(np.searchsorted(np.cumsum(lengths), spec.events)) + 1
    lengths = lengths[:cut]
    lengths[-1] -= int(lengths.sum() - spec.events)
    n_sessions = len(lengths)
    session_user = rng.choice(spec.users, n_sessions, p=user_activity / user_activity.sum())
    session_start = np.sort(rng.integers(0, horizon - 3600, n_sessions))
    drifted = rng.random(n_sessions) < 0.6 * session_start / horizon
    audience = np.where(drifted, drift_audience[session_user], user_audience[session_user])
    session_topic = audience_topics[audience, rng.integers(0, liked, n_sessions)]

    # Per topic: items ordered by arrival with cumulative popularity, for sampling available items.
    by_topic = [np.flatnonzero(topic == t) for t in range(n_topics)]
    by_topic = [members[np.argsort(created[members], kind="stable")] for members in by_topic]
    cum_weight = [np.cumsum(popularity[members]) for members in by_topic]
    arrivals = [created[members] for members in by_topic]

    def sample(topics: np.ndarray, times: np.ndarray) -> np.ndarray:
        out = np.empty(len(topics), dtype=np.int64)
        for t in range(n_topics):
            rows = np.flatnonzero(topics == t)
            if not len(rows):
                continue
            available = np.searchsorted(arrivals[t], times[rows], side="right")
            available = np.maximum(available, 1)
            # Fresh items get a boost: half the draws come from items of the last 14 days.
            fresh_from = np.searchsorted(arrivals[t], times[rows] - 14 * DAY, side="left")
            lo = np.where((rng.random(len(rows)) < 0.15) & (fresh_from < available), fresh_from, 0)
            base = np.where(lo > 0, cum_weight[t][np.maximum(lo - 1, 0)], 0.0)
            r = base + rng.random(len(rows)) * (cum_weight[t][available - 1] - base)
            out[rows] = by_topic[t][np.minimum(np.searchsorted(cum_weight[t], r), available - 1)]
        return out

    total = int(lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    item = np.empty(total, dtype=np.int64)
    ts = np.empty(total, dtype=np.int64)
    session_of = np.repeat(np.arange(n_sessions), lengths)
    position = np.arange(total) - offsets[session_of]
    gaps = rng.integers(30, 900, total)
    for k in range(int(lengths.max())):
        rows = np.flatnonzero(position == k)
        sessions = session_of[rows]
        ts[rows] = ts[rows - 1] + gaps[rows] if k else session_start[sessions]
        fresh = sample(session_topic[sessions], ts[rows])
        if k:
            previous = item[rows - 1]
            follow = sequel[previous]
            use_sequel = (rng.random(len(rows)) < 0.45) & (created[follow] <= ts[rows])
            fresh = np.where(use_sequel, follow, fresh)
        item[rows] = fresh

    item_ids = np.char.add("i", np.arange(spec.items).astype(str))
    user_ids = np.char.add("u", np.arange(spec.users).astype(str))
    titles, texts = _texts(rng, topic, second, names)
    topic_names = np.asarray(names, dtype=object)
    items = pl.DataFrame(
        {
            "item_id": item_ids,
            "title": titles,
            "text": texts,
            "categories": [[name] for name in topic_names[topic]],
            "created_at": START_TS + created,
        }
    )
    interactions = (
        pl.DataFrame(
            {
                "user_id": user_ids[session_user[session_of]],
                "item_id": item_ids[item],
                "ts": START_TS + ts,
                "event": np.where(rng.random(total) < 0.1, "purchase", "view"),
            }
        )
        .unique(maintain_order=True)
        .sort("ts", maintain_order=True)
    )
    return items, interactions


def _user_counts(rng: np.random.Generator, users: int, events: int, shape: _Shape) -> np.ndarray:
    """Events per user: lognormal activity, or (shop) mostly one or two and a heavy tail for the rest."""
    if not shape.sparse_users:
        activity = rng.lognormal(0.0, 1.0, users)
        return rng.multinomial(events, activity / activity.sum())
    n_sparse = int(users * shape.sparse_users)
    counts = np.zeros(users, dtype=np.int64)
    given = np.minimum(np.cumsum(1 + (rng.random(n_sparse) < 0.3)), events)
    counts[:n_sparse] = np.diff(given, prepend=0)
    regulars = rng.lognormal(0.0, 1.5, users - n_sparse)
    counts[n_sparse:] = rng.multinomial(events - int(given[-1] if n_sparse else 0), regulars / regulars.sum())
    return counts[rng.permutation(users)]


@dataclass(frozen=True)
class RegimeWorld:
    """The hidden state a regime's events are drawn from: what a recommender has to learn.

    Item ``i`` is ``f"i{i}"`` and user ``u`` is ``f"u{u}"`` in the generated frames; times are seconds
    from ``START_TS``. An oracle that knows this state (``bench/headroom.py``) says how far any
    recommender could get on the catalog.
    """

    shape: _Shape
    horizon: int
    topic: np.ndarray
    """Each item's topic index."""
    second: np.ndarray
    """Each item's second topic (its text borrows from it; the topic itself decides who consumes it)."""
    popularity: np.ndarray
    """Each item's base popularity (draws within a topic are proportional to it)."""
    created: np.ndarray
    """Each item's arrival, seconds from START_TS (negative: back catalog)."""
    sequel: np.ndarray
    """Each item's sequel: the item a session moves to with probability ``shape.sequel``."""
    audience_topics: np.ndarray
    """[audiences, liked]: the topics each audience's sessions are drawn from, uniformly."""
    first_audience: np.ndarray
    """Each user's audience at the start of the span."""
    last_audience: np.ndarray
    """The audience a user drifts towards (``shape.drift`` of the way by the end of the span)."""
    drift_speed: np.ndarray
    """How fast each user drifts (a session at time t belongs to the last audience with probability
    ``shape.drift * clip(t / horizon * drift_speed, 0, 1)``)."""

    def by_topic(self) -> dict[int, np.ndarray]:
        """Each topic's items in order of arrival (the order the draws search them in)."""
        members: dict[int, np.ndarray] = {}
        for t in np.unique(self.topic).tolist():
            found = np.flatnonzero(self.topic == t)
            members[t] = found[np.argsort(self.created[found], kind="stable")]
        return members


def regime_world(spec: DemoSpec) -> RegimeWorld:
    """The hidden state behind ``generate_demo(spec)`` for a regime other than ``default``."""
    if spec.regime == "default":
        raise ValueError("the default catalog has no RegimeWorld; pick a regime")
    return _draw_world(_regime_rng(spec), spec, SHAPES[spec.regime])


def _regime_rng(spec: DemoSpec) -> np.random.Generator:
    return np.random.default_rng([spec.seed, REGIMES.index(spec.regime)])


def _draw_world(rng: np.random.Generator, spec: DemoSpec, shape: _Shape) -> RegimeWorld:
    """Items (topic, base popularity, arrival, a sequel in the same topic) and audiences; the first
    draws of ``rng``, so that the events that follow are the same whether or not anyone asks."""
    n_topics = min(spec.topics, len(TOPICS))
    horizon = spec.days * DAY
    topic = rng.integers(0, n_topics, spec.items)
    second = np.where(rng.random(spec.items) < 0.3, rng.integers(0, n_topics, spec.items), topic)
    popularity = 1.0 / (1.0 + rng.permutation(spec.items)) ** shape.zipf
    present, first_of_topic = np.unique(topic, return_index=True)
    is_new = rng.random(spec.items) < shape.new_share
    is_new[first_of_topic] = False  # every topic has an item before the span, so every draw finds one
    created = np.where(
        is_new,
        rng.integers(0, max(horizon - DAY, 1), spec.items),
        -rng.integers(DAY, 365 * DAY, spec.items),
    )
    sequel = np.arange(spec.items)
    for t in present.tolist():
        members = np.flatnonzero(topic == t)
        sequel[members] = rng.permutation(members)
    # Audiences like a few unrelated topics; with drift, a user moves towards a second audience.
    n_audiences = max(2, len(present) // 3)
    liked = min(3, len(present))
    audience_topics = np.stack([rng.choice(present, liked, replace=False) for _ in range(n_audiences)])
    first_audience = rng.integers(0, n_audiences, spec.users)
    last_audience = (first_audience + rng.integers(1, n_audiences, spec.users)) % n_audiences
    drift_speed = rng.uniform(0.7, 1.4, spec.users)
    return RegimeWorld(
        shape,
        horizon,
        topic,
        second,
        popularity,
        created,
        sequel,
        audience_topics,
        first_audience,
        last_audience,
        drift_speed,
    )


def _generate_regime(spec: DemoSpec, shape: _Shape) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A catalog of one regime: the default's topics, audiences and texts, behaving as ``shape`` says."""
    rng = _regime_rng(spec)
    names = list(TOPICS)[: spec.topics] if spec.topics <= len(TOPICS) else list(TOPICS)
    horizon = spec.days * DAY
    world = _draw_world(rng, spec, shape)
    topic, created, sequel = world.topic, world.created, world.sequel
    by_topic = world.by_topic()
    cum_weight = {t: np.cumsum(world.popularity[members]) for t, members in by_topic.items()}
    arrivals = {t: created[members] for t, members in by_topic.items()}
    liked = world.audience_topics.shape[1]
    first_audience, last_audience, drift_speed = world.first_audience, world.last_audience, world.drift_speed

    # Events, grouped by user then session; a session is one topic, its events a few gaps apart.
    counts = _user_counts(rng, spec.users, spec.events, shape)
    total = int(counts.sum())
    user_of = np.repeat(np.arange(spec.users), counts)
    starts_session = rng.random(total) < 1.0 / shape.session_length
    starts_session[(np.cumsum(counts) - counts)[counts > 0]] = True
    session_first = np.flatnonzero(starts_session)
    del starts_session
    n_sessions = len(session_first)
    session_of = np.repeat(np.arange(n_sessions), np.diff(np.append(session_first, total)))
    gaps = rng.integers(shape.gap_s[0], shape.gap_s[1], total)
    gaps[session_first] = 0
    offset = np.cumsum(gaps)
    del gaps
    offset -= offset[session_first][session_of]
    duration = offset[np.append(session_first[1:], total)[:n_sessions] - 1]
    session_start = (rng.random(n_sessions) * np.maximum(horizon - 1 - duration, 1)).astype(np.int64)
    ts = session_start[session_of] + offset
    del offset
    session_user = user_of[session_first]
    moved = shape.drift * np.clip(session_start / horizon * drift_speed[session_user], 0.0, 1.0)
    audience = np.where(
        rng.random(n_sessions) < moved, last_audience[session_user], first_audience[session_user]
    )
    session_topic = world.audience_topics[audience, rng.integers(0, liked, n_sessions)]

    def sample(topics: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Items of these topics available at these times: near their release, or by popularity."""
        out = np.empty(len(topics), dtype=np.int64)
        for t in np.unique(topics).tolist():
            rows = np.flatnonzero(topics == t)
            cum, arrival, when = cum_weight[t], arrivals[t], times[rows]
            available = np.searchsorted(arrival, when, side="right")
            pick = np.searchsorted(cum, rng.random(len(rows)) * cum[available - 1])
            # The burst: an age drawn from an exponential, then the items released in the day before it.
            released = when - rng.exponential(shape.release_days * DAY, len(rows))
            newest = np.maximum(np.searchsorted(arrival, released, side="right") - 1, 0)
            oldest = np.minimum(np.searchsorted(arrival, released - DAY, side="left"), newest)
            base = np.where(oldest > 0, cum[np.maximum(oldest - 1, 0)], 0.0)
            burst = np.searchsorted(cum, base + rng.random(len(rows)) * (cum[newest] - base))
            in_burst = rng.random(len(rows)) < shape.release_share
            pick = np.where(in_burst, np.clip(burst, oldest, newest), np.minimum(pick, available - 1))
            out[rows] = by_topic[t][pick]
        return out

    position = np.arange(total) - session_first[session_of]
    order = np.argsort(position, kind="stable")
    bounds = np.searchsorted(position[order], np.arange(int(position.max(initial=0)) + 2))
    del position
    item = np.empty(total, dtype=np.int64)
    for k in range(len(bounds) - 1):
        rows = order[bounds[k] : bounds[k + 1]]
        drawn = sample(session_topic[session_of[rows]], ts[rows])
        if k:
            follow = sequel[item[rows - 1]]
            use_sequel = (rng.random(len(rows)) < shape.sequel) & (created[follow] <= ts[rows])
            drawn = np.where(use_sequel, follow, drawn)
        item[rows] = drawn
    del order, session_of

    titles, texts = _texts_vectorized(rng, topic, world.second, names)
    topic_names = np.asarray(names, dtype=object)
    items = pl.DataFrame(
        {
            "item_id": np.char.add("i", np.arange(spec.items).astype(str)),
            "title": titles,
            "text": texts,
            "categories": [[name] for name in topic_names[topic]],
            "created_at": START_TS + created,
        }
    )
    interactions = (
        pl.DataFrame(
            {
                "user": user_of,
                "item": item,
                "ts": START_TS + ts,
                "purchase": rng.random(total) < shape.purchase_share,
            }
        )
        .unique()
        .sort("ts", "user", "item", "purchase")  # every column: the order is the same on every run
        .select(
            pl.format("u{}", "user").alias("user_id"),
            pl.format("i{}", "item").alias("item_id"),
            "ts",
            pl.when("purchase").then(pl.lit("purchase")).otherwise(pl.lit("view")).alias("event"),
        )
    )
    return items, interactions


def write_demo(out_dir: str | Path, spec: DemoSpec) -> tuple[Path, Path]:
    items, interactions = generate_demo(spec)
    out = Path(out_dir)
    items_path, events_path = out / "items.parquet", out / "interactions.parquet"
    atomic_write_parquet(items, items_path)
    atomic_write_parquet(interactions, events_path)
    return items_path, events_path
