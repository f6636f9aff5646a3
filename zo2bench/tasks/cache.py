"""The on-disk cache for generated data and pretrained models: outside results/, named by a digest of the recipe.

    root = cache_root()                      # $ZO2BENCH_CACHE, else ~/.cache/zo2bench
    d = digest({"recipe": ..., "version": 1})[:12]
    path = build_once(root / "data" / f"synthetic-{d}", lambda tmp: write_everything_into(tmp))

build_once() builds into a temporary folder beside the final one and renames it into place, under a lock:
a crash leaves no half-built entry, two processes never build the same entry at once, and the second
finds the first's result. An entry is never rebuilt while it exists; a changed recipe is a new digest.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from zo2bench.errors import UserError


def cache_root() -> Path:
    env = os.environ.get("ZO2BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zo2bench"


def digest(obj) -> str:
    """sha256 of the canonical JSON of obj (sorted keys): the same recipe gives the same name everywhere."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_once(final: Path, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """(final, built_now): final exists afterwards, made by build(tmp_dir) unless it already existed."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the cache folder {final.parent} ({e}); set ZO2BENCH_CACHE to a writable "
                        f"folder") from None
    if final.is_dir():
        return final, False
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():  # built by another process while this one waited
            return final, False
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
        try:
            build(tmp)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, True
