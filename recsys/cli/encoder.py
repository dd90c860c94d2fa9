"""``recsys encoder``: fine-tune the sentence encoder on a dataset's logs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from recsys.cli.common import load_data, state
from recsys.console import console, out

app = typer.Typer(no_args_is_help=True, help="Fine-tune the text encoder on interaction logs.")


@app.command()
def train(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="Dataset folder (items.* and interactions.*)."),
    out_dir: Path = typer.Option(
        ..., "--out", help="Folder for the fine-tuned encoder (sentence-transformers format)."
    ),
) -> None:
    """Fine-tune on every event in --data; each user's last encoder.eval_share picks the checkpoint."""
    from recsys.encoder.train import fine_tune

    config = state(ctx).config
    dataset = load_data(ctx, data)
    with console.status("fine-tuning the encoder"):
        result = fine_tune(
            dataset.items, dataset.interactions, config.encoder, config.embeddings.template, out_dir
        )
    table = Table(
        title=f"{result.path}: {result.n_pairs:,} pairs, {result.steps} steps, {result.seconds:.0f} s"
    )
    for column in ("metric", "pretrained", "fine-tuned"):
        table.add_column(column)
    for name, after in result.metrics_after.items():
        table.add_row(name, f"{result.metrics_before.get(name, float('nan')):.4f}", f"{after:.4f}")
    out.print(table)
