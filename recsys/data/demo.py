"""The built-in demo catalog: a seeded generator whose right answers are known.

Items belong to latent topics and carry English titles and 2-4 sentence descriptions
drawn from per-topic vocabularies. Users belong to audiences that like a few topics
which are *not* related in language (say jazz, gardening and astronomy), so a pretrained
encoder cannot know they go together but one fine-tuned on the logs can. Tastes drift
over the 90 days, popularity is Zipf-skewed, users come back in sessions where items
follow "sequels" (co-consumption), and new items keep arriving (cold-start items).
Everything is vectorized with numpy: 100k items / 5M events take well under 2 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class DemoSpec:
    users: int = 2000
    items: int = 3000
    events: int = 120_000
    topics: int = 24
    days: int = 90
    seed: int = 7


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


def generate_demo(spec: DemoSpec) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(items, interactions) in the input contract; the same spec always gives the same frames."""
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


def write_demo(out_dir: str | Path, spec: DemoSpec) -> tuple[Path, Path]:
    items, interactions = generate_demo(spec)
    out = Path(out_dir)
    items_path, events_path = out / "items.parquet", out / "interactions.parquet"
    atomic_write_parquet(items, items_path)
    atomic_write_parquet(interactions, events_path)
    return items_path, events_path
