"""Fine-tune the sentence encoder on the logs with the library's trainer.

Model + pairs + ``MultipleNegativesRankingLoss`` (in-batch negatives, no duplicate texts
in a batch) + an ``InformationRetrievalEvaluator`` on each user's last ``eval_share`` of the
given events. The evaluator's recall@100 picks the checkpoint that is kept. Budgets: pairs,
epochs, sequence length and a wall-clock limit that ends training early (after one last
evaluation, so the best checkpoint is still chosen by the evaluator).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from recsys.config import EncoderConfig
from recsys.data.splits import per_user_split
from recsys.device import cpu_has_fast_bf16, resolve_device
from recsys.encoder.model import load_encoder
from recsys.encoder.pairs import RetrievalQueries, build_pairs, retrieval_queries
from recsys.encoder.text import item_texts

if TYPE_CHECKING:
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

EVAL_NAME = "next_item"
SELECT_K = 100
"""Checkpoints are chosen by recall@SELECT_K: the encoder feeds a candidate generator, not the final order."""
TRAINING_INFO = "training.json"
EVAL_MIN_EVENTS = 5
"""Users with fewer events give no evaluation query (all their events are training pairs)."""


@dataclass(frozen=True)
class FineTuneResult:
    path: Path
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    seconds: float
    train_seconds: float
    """The training loop alone (steps, evaluations, checkpoints); ``seconds`` adds pairs and loading."""
    n_pairs: int
    steps: int
    stopped_by_budget: bool
    precision: str
    weights_sha256: str
    """Digest of the saved weights: two runs that should agree can be compared without loading them."""
    torch_threads: int
    """Threads training used: the sums of a step are split across them, so the last bits of the
    weights may depend on their number (same machine, same count, same weights)."""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


def weights_digest(model_dir: Path) -> str:
    """SHA-256 of a saved model's weight files, in name order."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")):
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def autocast(device: str, dtype_name: str) -> Iterator[None]:
    """Mixed precision for inference when ``dtype_name`` is bf16/fp16, a no-op for fp32."""
    import torch

    if dtype_name == "fp32":
        yield
        return
    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float16
    with torch.autocast(device_type=device, dtype=dtype):
        yield


def training_precision(device: str, config: EncoderConfig) -> str:
    """bf16 on GPUs that have it (else fp16); bf16 on CPUs with native bf16 when allowed; else fp32."""
    if device == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if config.cpu_bf16 and cpu_has_fast_bf16() else "fp32"


def dataloader_workers(config: EncoderConfig, device: str) -> int:
    """Processes that tokenize batches (the collator's work) beside training: on a GPU they keep it fed
    (on an H200 the GPU budget's steps/s doubled with 4); on CPUs the same cores train, so none. The
    sampler stays in the training process, so the batches are the same ones in the same order."""
    return config.gpu.dataloader_workers if device == "cuda" else 0


def make_evaluator(
    items: pl.DataFrame, queries: RetrievalQueries, template: str, precision: str, batch_size: int
) -> InformationRetrievalEvaluator:
    """Queries = user contexts at the eval cutoff, corpus = catalog texts, relevant = items consumed after."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    class MixedPrecisionEvaluator(InformationRetrievalEvaluator):
        """Encodes under the same autocast as training: on CPU this is what keeps evaluation cheap."""

        def __call__(self, model: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            with autocast(model.device.type, precision):
                metrics: dict[str, float] = super().__call__(model, *args, **kwargs)
            return metrics

    texts = item_texts(items, template)
    return MixedPrecisionEvaluator(
        queries={str(i): query for i, query in enumerate(queries.queries)},
        corpus={str(int(idx)): texts[int(idx)] for idx in queries.corpus},
        relevant_docs={str(i): {str(idx) for idx in rel} for i, rel in enumerate(queries.relevant)},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[10],
        precision_recall_at_k=[10, SELECT_K],
        map_at_k=[SELECT_K],
        batch_size=batch_size,
        name=EVAL_NAME,
        write_csv=False,
    )


def _budget_callback(budget_s: float | None) -> Any:
    """A TrainerCallback that stops at the time budget and always evaluates + saves at the last step."""
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

    class TimeBudget(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.stopped_by_budget = False

        def on_train_begin(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> None:
            self.started = time.monotonic()

        def on_step_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
        ) -> TrainerControl:
            if (
                budget_s is not None
                and time.monotonic() - self.started > budget_s
                and not control.should_training_stop
            ):
                control.should_training_stop = True
                self.stopped_by_budget = True
            if control.should_training_stop:
                control.should_evaluate = True
                control.should_save = True
            return control

    return TimeBudget()


def _metrics(raw: dict[str, float]) -> dict[str, float]:
    """``eval_next_item_cosine_recall@100`` -> ``recall@100``: short names for reports."""
    short = {}
    for key, value in raw.items():
        if EVAL_NAME in key and "@" in key:
            short[key.rsplit("_", 1)[-1]] = float(value)
    return dict(sorted(short.items()))


def _replace_dir(tmp: Path, final: Path) -> None:
    if final.exists():
        trash = final.parent / f".{final.name}.old-{time.time_ns()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def fine_tune(
    items: pl.DataFrame,
    interactions: pl.DataFrame,
    config: EncoderConfig,
    template: str,
    out_dir: Path,
    show_progress: bool = False,
) -> FineTuneResult:
    """Fine-tune ``config.base_model`` on pairs from ``interactions`` and save it to ``out_dir``.

    ``interactions`` must hold only events the encoder may learn from (before the caller's
    cutoff). Each user's last ``eval_share`` of events is held out for checkpoint selection.
    """
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    started = time.monotonic()
    out_dir = Path(out_dir)
    device = resolve_device("auto")
    config = config.for_device(device)
    # Per user, not one time cutoff: on bursty logs (MovieLens) few users are active on both sides of
    # any cutoff, and a handful of queries cannot tell checkpoints apart.
    train_events, eval_events = per_user_split(interactions, config.eval_share, min_events=EVAL_MIN_EVENTS)
    if train_events.is_empty() or eval_events.is_empty():
        raise ValueError(f"eval_share={config.eval_share} leaves no training or no evaluation events")
    pairs = build_pairs(items, train_events, config, template)
    queries = retrieval_queries(
        items, train_events, eval_events, config, config.eval_max_queries, config.eval_corpus_items
    )
    if not queries.queries:
        raise ValueError("no evaluation queries: no user is active both before and after the eval cutoff")

    precision = training_precision(device, config)
    model = load_encoder(config.base_model, device)
    model.max_seq_length = config.max_seq_length
    evaluator = make_evaluator(items, queries, template, precision, config.batch_size)
    metrics_before = _metrics(evaluator(model))

    train_dataset = Dataset.from_dict({"anchor": pairs.anchors, "positive": pairs.positives})
    if config.hard_negatives:
        from sentence_transformers.util import mine_hard_negatives

        with autocast(device, precision):
            train_dataset = mine_hard_negatives(
                train_dataset,
                model,
                corpus=item_texts(items, template),
                range_min=10,  # the very nearest items are often ones the user would like too
                range_max=100,
                num_negatives=1,
                sampling_strategy="random",
                batch_size=config.batch_size,
                verbose=False,
            )

    steps_per_epoch = max(1, math.ceil(len(train_dataset) / config.batch_size))
    eval_steps = config.eval_steps or steps_per_epoch
    metric = f"eval_{EVAL_NAME}_{model.similarity_fn_name}_recall@{SELECT_K}"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.train-", dir=out_dir.parent))
    try:
        args = SentenceTransformerTrainingArguments(
            output_dir=str(scratch / "checkpoints"),
            num_train_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            # Constant after a short warm-up: a time budget may end training at any step, and a decaying
            # schedule planned for the full run would leave most of a cut-short run at a low rate.
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=max(1, min(10, steps_per_epoch // 10)),
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            eval_strategy="steps",
            eval_steps=eval_steps,
            save_strategy="steps",
            save_steps=eval_steps,
            save_total_limit=2,
            save_only_model=True,
            load_best_model_at_end=True,
            metric_for_best_model=metric,
            greater_is_better=True,
            logging_strategy="no",
            report_to="none",
            use_cpu=device == "cpu",
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            seed=config.seed,
            data_seed=config.seed,
            dataloader_num_workers=dataloader_workers(config, device),
            disable_tqdm=not show_progress,
        )
        budget = _budget_callback(config.time_budget_s)
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            loss=MultipleNegativesRankingLoss(model),
            evaluator=evaluator,
            callbacks=[budget],
        )
        if not show_progress:
            from transformers import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # it prints every evaluation's dict to stdout
        train_seconds = float(trainer.train().metrics["train_runtime"])
        # The evaluator's scores of the kept (best) checkpoint, from the trainer's log: no extra evaluation.
        evaluations = [entry for entry in trainer.state.log_history if metric in entry]
        metrics_after = _metrics(max(evaluations, key=lambda entry: float(entry[metric])))
        staged = scratch / "model"
        model.save_pretrained(str(staged))
        result = FineTuneResult(
            path=out_dir,
            metrics_before=metrics_before,
            metrics_after=metrics_after,
            seconds=time.monotonic() - started,
            train_seconds=train_seconds,
            n_pairs=len(train_dataset),
            steps=int(trainer.state.global_step),
            stopped_by_budget=bool(budget.stopped_by_budget),
            precision=precision,
            weights_sha256=weights_digest(staged),
            torch_threads=torch.get_num_threads(),
        )
        (staged / TRAINING_INFO).write_text(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
        _replace_dir(staged, out_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result
