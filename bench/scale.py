"""How `recsys run` grows with the catalog: wall time per stage and peak memory on generated catalogs.

    .venv/bin/python bench/scale.py [--shape USERS,ITEMS,EVENTS ...] [--regime R] [--out DIR]

Each shape is generated with `recsys data demo` and run with `recsys run` (the default config:
fine-tuning at its default step budget) in a subprocess under ``/usr/bin/time``, so the figures are
those of the product's own job. Default shapes: the one a user's shop catalog once failed on (64,000
users, 2,000 items, 80,000 events), ten times it, and the issue's event ladder at 100k items / 200k
users (0.5M, 1M, 2M, 5M events). Writes ``scale.json`` and ``scale.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from timed_cli import timed_cli

SHAPES = [
    (64_000, 2_000, 80_000),
    (640_000, 2_000, 800_000),
    (200_000, 100_000, 500_000),
    (200_000, 100_000, 1_000_000),
    (200_000, 100_000, 2_000_000),
    (200_000, 100_000, 5_000_000),
]


def bench_shape(users: int, items: int, events: int, regime: str, scratch: Path) -> dict[str, Any]:
    data, runs, log = scratch / "data", scratch / "runs", scratch / "log.txt"
    demo = ["data", "demo", "--out", str(data), "--regime", regime]
    timed_cli([*demo, "--users", str(users), "--items", str(items), "--events", str(events)], log)
    run = timed_cli(["run", "--data", str(data), "--runs", str(runs), "--run-id", "scale"], log)
    manifest = json.loads((runs / "scale" / "manifest.json").read_text())
    return {
        "users": users,
        "items": items,
        "events": events,
        "regime": regime,
        **run,
        "stages_s": manifest["timings_s"],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    stages = list(rows[0]["stages_s"]) if rows else []
    header = ["users", "items", "events", "wall s", "CPU s", "peak GiB", *stages]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            f"{row['users']:,}",
            f"{row['items']:,}",
            f"{row['events']:,}",
            f"{row['wall_s']:.0f}",
            f"{row.get('cpu_s', 0):.0f}",
        ]
        cells += [f"{row['peak_rss_gib']:.2f}", *(f"{row['stages_s'].get(s, 0):.0f}" for s in stages)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", nargs="*", default=None, help="USERS,ITEMS,EVENTS (default: all shapes)")
    parser.add_argument("--regime", default="default")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    shapes = [tuple(int(n) for n in shape.split(",")) for shape in args.shape] if args.shape else SHAPES
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for users, items, events in shapes:
        with tempfile.TemporaryDirectory(prefix="recsys-scale-") as scratch:
            rows.append(bench_shape(users, items, events, args.regime, Path(scratch)))
        (args.out / "scale.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "scale.md").write_text(markdown(rows))
        print(markdown(rows), flush=True)


if __name__ == "__main__":
    main()
