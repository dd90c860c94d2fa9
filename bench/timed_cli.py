"""Run a `recsys` command as a user would, measured: wall time and peak memory of the process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

RECSYS = str(Path(sys.executable).with_name("recsys"))


def timed_cli(args: list[str], log: Path, env: Mapping[str, str] | None = None) -> dict[str, float]:
    """``recsys ARGS`` under ``/usr/bin/time`` (output appended to ``log``): ``wall_s``, ``cpu_s`` (user +
    system: what the command itself used, whatever else ran) and ``peak_rss_gib``; raises when the
    command fails."""
    started = time.perf_counter()
    with log.open("a") as handle:
        handle.write(f"$ recsys {' '.join(args)}\n")
        handle.flush()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "PEAK_KB %M CPU_S %U %S", RECSYS, *args],
            env=dict(env) if env is not None else dict(os.environ),
            stdout=handle,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        handle.write(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"recsys {' '.join(args)} failed ({done.returncode}); see {log}")
    fields = next(
        (line.split() for line in reversed(done.stderr.splitlines()) if line.startswith("PEAK_KB")), []
    )
    peak_kb, cpu_s = (int(fields[1]), float(fields[3]) + float(fields[4])) if fields else (0, 0.0)
    return {
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_s": round(cpu_s, 1),
        "peak_rss_gib": round(peak_kb / 2**20, 2),
    }
