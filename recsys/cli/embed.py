"""``recsys embed``: encode every catalog item with an encoder."""

from __future__ import annotations

from pathlib import Path

import typer

from recsys.cli.common import load_data, state
from recsys.console import out

EMBEDDINGS_FILE = "item_embeddings.npz"


def embed(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="Dataset folder (items.* and interactions.*)."),
    encoder: str = typer.Option(
        ..., "--encoder", help="Encoder folder (or a Hugging Face id / bundled name)."
    ),
    out_dir: Path = typer.Option(..., "--out", help=f"Folder to write {EMBEDDINGS_FILE} into."),
) -> None:
    """Embed the catalog (template text, L2-normalized float32, GPU when present)."""
    from recsys.embeddings import encode_items
    from recsys.encoder import load_encoder

    config = state(ctx).config
    dataset = load_data(ctx, data)
    embeddings = encode_items(
        load_encoder(encoder, config.embeddings.device), dataset.items, config.embeddings
    )
    embeddings.save(out_dir / EMBEDDINGS_FILE)
    out.print(f"wrote {out_dir / EMBEDDINGS_FILE}: {len(embeddings):,} items x {embeddings.dim} dims")
