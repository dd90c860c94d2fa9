"""The CLI chain embed -> index build -> similar on a tiny demo catalog, with the real bundled encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.data.demo import DemoSpec, write_demo
from recsys.embeddings import ItemEmbeddings
from recsys.index import load_index


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    write_demo(tmp_path / "data", DemoSpec(users=20, items=30, events=200, topics=3, seed=4))
    return tmp_path / "data"


@pytest.mark.slow
def test_embed_build_and_similar(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_INDEX__BACKEND", "hnsw")
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["embed", "--data", str(data_dir), "--encoder", "all-MiniLM-L6-v2", "--out", str(tmp_path / "emb")],
    )
    assert result.exit_code == 0, result.output
    embeddings = ItemEmbeddings.load(tmp_path / "emb" / "item_embeddings.npz")
    assert len(embeddings) == 30 and embeddings.dim == 384

    result = runner.invoke(
        app,
        [
            "index",
            "build",
            "--embeddings",
            str(tmp_path / "emb" / "item_embeddings.npz"),
            "--out",
            str(tmp_path / "idx"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert load_index(tmp_path / "idx").backend == "hnsw"

    args = [
        "similar",
        "--item",
        "i0",
        "--data",
        str(data_dir),
        "--embeddings",
        str(tmp_path / "emb" / "item_embeddings.npz"),
    ]
    result = runner.invoke(app, [*args, "--index", str(tmp_path / "idx"), "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "nearest to i0" in result.output and result.output.count(" i") >= 3

    result = runner.invoke(app, ["similar", "--item", "nope", *args[3:], "--k", "3"])
    assert result.exit_code == 1 and "nope" in result.output
