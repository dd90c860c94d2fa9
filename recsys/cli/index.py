"""``recsys index build`` and ``recsys similar``: the item-vector index and a look at its neighbours."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from recsys.cli.common import fail, state
from recsys.console import out
from recsys.data import DataValidationError, load_dataset
from recsys.embeddings import ItemEmbeddings

app = typer.Typer(no_args_is_help=True, help="Nearest-neighbour index over item embeddings.")


@app.command()
def build(
    ctx: typer.Context,
    embeddings: Path = typer.Option(..., "--embeddings", help="item_embeddings.npz from `recsys embed`."),
    out_dir: Path = typer.Option(..., "--out", help="Folder for the index (index.json + data)."),
) -> None:
    """Build the index the config asks for (index.backend; auto by catalog size)."""
    from recsys.index import build_index

    index = build_index(ItemEmbeddings.load(embeddings).vectors, state(ctx).config.index)
    index.save(out_dir)
    out.print(f"wrote {out_dir}: {index.backend} index of {index.ntotal:,} items")


def similar(
    item: str = typer.Option(..., "--item", help="Item id."),
    data: Path = typer.Option(..., "--data", help="Dataset folder, for titles."),
    embeddings: Path = typer.Option(..., "--embeddings", help="item_embeddings.npz."),
    index_dir: Path | None = typer.Option(None, "--index", help="Index folder (default: exact search)."),
    k: int = typer.Option(10, "--k", min=1, help="How many neighbours."),
) -> None:
    """The items nearest to --item, with titles and cosine scores."""
    from recsys.index import load_index, similar_items

    try:
        items = load_dataset(data).items
        neighbours = similar_items(
            ItemEmbeddings.load(embeddings), item, k, load_index(index_dir) if index_dir else None
        )
    except (DataValidationError, KeyError, ValueError, FileNotFoundError) as error:
        fail(str(error))
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list(), strict=True))
    table = Table(title=f"nearest to {item}: {titles.get(item, '?')}")
    for column in ("rank", "item_id", "title", "score"):
        table.add_column(column)
    for rank, (item_id, score) in enumerate(neighbours, start=1):
        table.add_row(str(rank), item_id, titles.get(item_id, "?"), f"{score:.4f}")
    out.print(table)
