"""A distributed sweep cell: its ranks started as one launch from the cell's process, rank 0's record read back.

    status, reason, record = launched_run(cfg, emit)   # cell.py, for a cell whose grid.parallel has 2+ ranks

The cell process calls distributed/launch.relaunch (torch.distributed.run, in this process), exactly as
`zo2bench run --nproc-per-node N` does, with --out in a temporary folder; rank 0 writes the merged record
there (distributed/measure.py: the slowest rank's step times, every rank's GPU and peaks). torchrun keeps
each rank's stderr beside it, so a failed launch's row says what the ranks said. The ranks' own probes are
their allocator peaks (in the record, per rank); the cell's NVML and host samplers are not run, since they
would watch this process and not the ranks.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from zo2bench.config import RunConfig


def launched_run(cfg: RunConfig, emit) -> tuple[str, str | None, dict | None]:
    """(status, reason, rank 0's record or None): ok, or oom / error with the ranks' last stderr lines."""
    from zo2bench.distributed.launch import rank_stderr, relaunch

    with tempfile.TemporaryDirectory(prefix="zo2bench-cell-") as tmp:
        out, logs = Path(tmp) / "record.json", Path(tmp) / "logs"
        emit("phase", phase=f"launching {cfg.nproc_per_node} ranks")
        rc = relaunch(cfg, str(out), log_dir=str(logs))
        said = rank_stderr(str(logs)) if logs.exists() else ""
        if rc == 0 and out.exists():
            return "ok", None, json.loads(out.read_text())
    lines = [line for line in said.splitlines() if "zo2bench: error:" in line] or said.splitlines()[-4:]
    why = "\n".join(lines) or "no output from the ranks"
    status = "oom" if "out of GPU memory" in why else "error"
    return status, f"the ranks exited with status {rc}: {why}", None
