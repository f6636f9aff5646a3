"""`zo2bench run --nproc-per-node N`: the same command again, as N ranks started by torch.distributed.run.

    status = relaunch(cfg, out="r.json")   # blocks until every rank ends; the ranks' worst exit status
    worker_args(cfg, out)                   # ["run", "--model", "opt-tiny", ..., "--out", "/abs/r.json"]
    relaunch(cfg, out, command="bench-step", extra=("--results-dir", "/abs/results"), log_dir="/tmp/logs")
    rank_stderr("/tmp/logs")                # each rank's last stderr lines (a sweep cell's reason)

The launcher is torchrun's own (torch.distributed.run, standalone rendezvous on this host), called in this
process so that a rank's exit status comes back as it was: a rank that met bad input exits 2 after its
one line, and so does this command. Each rank runs `python -m zo2bench run ...` with the configuration
spelled out in full, finds torchrun's environment, and takes the distributed path (commands/run.py).
Across hosts, run torchrun yourself on each host (docs/distributed.md has the commands).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import uuid
from pathlib import Path

from zo2bench.config import RunConfig

FLAGS = {"gpu_budget_gib": "--gpu-budget"}  # RunConfig fields whose option is not --<field-with-dashes>


def worker_args(cfg: RunConfig, out: str | None, command: str = "run", extra: tuple = ()) -> list[str]:
    """`command`'s arguments for one rank: cfg in full, then `extra` (a command's own options), then --out."""
    args = [command]
    for f in dataclasses.fields(RunConfig):
        value, flag = getattr(cfg, f.name), FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        if isinstance(value, bool):  # a switch (store_true): present or absent
            args += [flag] if value else []
        elif value is not None:
            args += [flag, str(value)]
    args += [str(a) for a in extra]
    if out:
        args += ["--out", out if out == "-" else str(Path(out).resolve())]
    return args


def relaunch(cfg: RunConfig, out: str | None, command: str = "run", extra: tuple = (),
             log_dir: str | None = None) -> int:
    """`log_dir`: torchrun keeps each rank's stderr there too (rank_stderr() reads it), besides the console."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    root = str(Path(__file__).resolve().parents[2])  # the directory that holds the zo2bench package
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    # the host's cores shared among the ranks (torchrun would set 1 and warn)
    # each rank ends when this process does (a sweep cell killed at its timeout leaves no rank holding a GPU)
    os.environ["ZO2BENCH_DIE_WITH"] = str(os.getpid())  # experiments.launch.PARENT_ENV, read by the ranks
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.nproc_per_node)))
    argv = ["--standalone", f"--nproc-per-node={cfg.nproc_per_node}", f"--rdzv-id={uuid.uuid4().hex}",
            "--max-restarts=0", *(["--log-dir", log_dir, "--tee", "2"] if log_dir else []),
            "--no-python", sys.executable, "-m", "zo2bench", *worker_args(cfg, out, command, extra)]
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)  # its summary of a failed rank would repeat what the rank printed
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        codes = [c if c >= 0 else 128 - c for c in (f.exitcode for f in e.failures.values())]  # -9: 137
        return 2 if 2 in codes else max(codes, default=1)
    finally:
        elastic.setLevel(level)
    return 0


def rank_stderr(log_dir: str, lines: int = 5) -> str:
    """The last lines of each rank's stderr that torchrun kept under log_dir (relaunch's), rank by rank."""
    out = []
    for f in sorted(Path(log_dir).rglob("stderr.log")):
        tail = [line for line in f.read_text(errors="replace").splitlines() if line.strip()][-lines:]
        if tail:
            out.append(f"[{f.parent.name}] " + " | ".join(tail))
    return "\n".join(out)
