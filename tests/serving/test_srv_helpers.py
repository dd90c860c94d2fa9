"""The serving tests' copies of a run: the weights are shared on disk, everything else is the copy's own."""

from __future__ import annotations

from pathlib import Path

from srv_helpers import TinyRun, copy_tree


def test_copies_share_the_encoder_weights_and_own_everything_else(tiny_run: TinyRun, tmp_path: Path) -> None:
    source = tiny_run.runs_dir / tiny_run.run_id
    copy_tree(source, tmp_path / "copy")
    weights = sorted(p.relative_to(source) for p in source.rglob("*.safetensors"))
    assert weights, "the run has no encoder weights to share"
    for relative in weights:
        assert (tmp_path / "copy" / relative).stat().st_ino == (source / relative).stat().st_ino
    ranker = Path("ranker") / "model.txt"
    before = (source / ranker).read_text()
    (tmp_path / "copy" / ranker).write_text("rewritten in the copy\n")
    assert (source / ranker).read_text() == before
