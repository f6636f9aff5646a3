"""Result records: their schema version, and writing them so that a crash never leaves half a file.

A run record (what `zo2bench run --out FILE.json` writes) looks like:

    {"schema_version": 1, "kind": "run", "status": "ok",
     "config": {...RunConfig...}, "model": {"name", "family", "n_params", "n_blocks", "block_params", ...},
     "fingerprint": {...probes.fingerprint...},
     "build": {"seconds", "torch_peak_allocated_bytes", ...},
     "steps": [{"step", "warmup", "loss_plus", "loss_minus", "projected_grad", "seconds"}],  # fo-*: "loss"
     "memory": {phase: {"torch_peak_allocated_bytes", "torch_peak_reserved_bytes"}},
     "final_params_sha256": "..."}
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

SCHEMA_VERSION = 1


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
