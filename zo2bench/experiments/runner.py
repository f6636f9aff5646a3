"""The sweep: each cell of one experiment profile in a fresh process, one row appended as each cell ends.

    zo2bench sweep experiments/memory_scaling.toml                 # profile: "gpu" with CUDA, else "cpu"
    zo2bench sweep experiments/memory_scaling.toml --profile cpu --only-models opt-tiny --force

    summary = sweep(spec.load(path), profile=None, results_dir="results")

A fresh process per cell, so that a peak belongs to one cell and a crash or an out-of-memory ends one cell,
not the sweep. Before launching, a cell is `infeasible` when its weights cannot fit (exact bytes against
psutil's host total or the GPU's total), and `skipped` when a smaller model of its group (same mode, dtype,
batch, seq) ran out of GPU memory. Rows already under results/<series>/<machine_id>/ are not run again
unless --force: an interrupted sweep resumes where it stopped and loses nothing.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import zo2bench
from zo2bench import results
from zo2bench.config import ZO_MODES, RunConfig
from zo2bench.errors import UserError
from zo2bench.experiments.spec import Cell, Experiment

EVENT_PREFIX = "@zo2bench "  # a cell's progress lines on stdout; anything else it prints is not ours
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
GiB = 2**30
STDERR_TAIL_LINES = 25


@dataclass(frozen=True)
class Machine:
    """What the runner needs to know about where it runs: results directory name and memory totals."""

    machine_id: str
    fingerprint: dict
    host_total_bytes: int
    cuda_available: bool
    gpu_total_bytes: dict = field(default_factory=dict)  # device index -> torch total_memory


def detect_machine() -> Machine:
    import psutil
    import torch

    from zo2bench.probes.fingerprint import fingerprint, machine_id

    cuda = torch.cuda.is_available()
    fp = fingerprint("cuda:0" if cuda else None)
    gpus = {i: torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count())} if cuda else {}
    return Machine(machine_id(fp), fp, psutil.virtual_memory().total, cuda, gpus)


def resolve_device(device: str, machine: Machine) -> str:
    if device == "auto":
        return "cuda:0" if machine.cuda_available else "cpu"
    return "cuda:0" if device == "cuda" else device


def feasibility(cfg: RunConfig, n_params: int, machine: Machine) -> dict | None:
    """None if the cell's weights (or fo-*'s model states) can fit, else why not, with the arithmetic."""
    if cfg.mode in ZO_MODES:
        per, what = DTYPE_BYTES[cfg.dtype], f"{cfg.dtype} weights ({DTYPE_BYTES[cfg.dtype]} B/param)"
    elif cfg.mode == "fo-adamw":
        per, what = 16, "fp32 master weights + grads + 2 Adam moments (4+4+4+4 = 16 B/param)"
    else:  # fo-sgd: no optimizer state
        per, what = 8, "fp32 master weights + grads (4+4 = 8 B/param)"
    device = cfg.device
    if cfg.mode == "zo2" or device == "cpu":  # zo2 keeps every block in host memory; cpu runs hold all there
        where, limit, source = "host", machine.host_total_bytes, "psutil virtual_memory().total"
    else:
        where, source = device, "torch total_memory"
        limit = machine.gpu_total_bytes.get(int(device.split(":")[1]) if ":" in device else 0)
    need = n_params * per
    if limit is None or need <= limit:
        return None
    reason = (f"{cfg.mode} keeps {what} in {where} memory: {n_params:,} params x {per} B = {need:,} B "
              f"({need / GiB:.1f} GiB) > {limit:,} B ({limit / GiB:.1f} GiB) {where} total ({source})")
    return {"reason": reason, "need_bytes": need, "limit_bytes": limit, "where": where}


# -- one cell in its own process -----------------------------------------------------------------

def _cell_env() -> dict:
    env = dict(os.environ)  # the child imports this very package, wherever it was imported from
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(zo2bench.__file__).parent.parent),
                                                      env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Interpreter:
    """A cell in a new interpreter (where fork is unavailable, or the zygote failed)."""

    def __init__(self, payload: Path, stdout: Path, stderr: Path):
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "zo2bench.experiments.cell", "--payload", str(payload)],
                                         stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=_cell_env())

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Zygote:
    """One process that has imported torch and transformers, forking a fresh child per cell (zygote.py):
    a cell starts in a fraction of a second instead of the 12-13 s those imports take on the GPU machine."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "zo2bench.experiments.zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_cell_env(), text=True)
        self.replies: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(self.proc.stdout, self.replies), daemon=True).start()

    def start(self, payload: Path, stdout: Path, stderr: Path) -> "_Forked":
        self.proc.stdin.write(json.dumps({"payload": str(payload), "stdout": str(stdout), "stderr": str(stderr)}) + "\n")
        self.proc.stdin.flush()
        line = self.replies.get(timeout=120)  # the zygote is still importing the first time
        if line is None:
            raise RuntimeError("the zygote process ended")
        return _Forked(self, json.loads(line)["pid"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


class _Forked:
    def __init__(self, zygote: Zygote, pid: int):
        self.zygote, self.pid, self.returncode = zygote, pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                line = self.zygote.replies.get_nowait()
            except queue.Empty:
                return None
            self.returncode = json.loads(line)["returncode"] if line else -signal.SIGKILL
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while self.poll() is None:
            time.sleep(0.05)


def launch_cell(payload: dict, timeout_s: float, on_event: Callable[[dict], None], zygote: Zygote | None = None) -> dict:
    """Run zo2bench.experiments.cell in a fresh process (forked from `zygote` when given, else a new
    interpreter), relaying its progress lines to on_event.

    Returns {"returncode", "timed_out", "stderr_tail", "done"} where "done" is the cell's last event (with
    its status) or None when it died before saying so.
    """
    with tempfile.TemporaryDirectory(prefix="zo2bench-cell-") as tmp:
        paths = [Path(tmp) / name for name in ("payload.json", "stdout.txt", "stderr.txt")]
        paths[0].write_text(json.dumps(payload, default=str))
        paths[1].touch(), paths[2].touch()
        proc = zygote.start(*paths) if zygote is not None else _Interpreter(*paths)
        done, timed_out, seen = None, False, 0
        deadline = time.monotonic() + timeout_s
        try:  # files, not pipes: a chatty child can never block on them
            while True:
                rc = proc.poll()
                text = paths[1].read_text(errors="replace")
                complete = text[: text.rfind("\n") + 1]
                for line in complete[seen:].splitlines():
                    if line.startswith(EVENT_PREFIX):
                        try:
                            event = json.loads(line[len(EVENT_PREFIX):])
                        except json.JSONDecodeError:
                            continue
                        done = event if event.get("event") == "done" else done
                        on_event(event)
                seen = len(complete)
                if rc is not None:
                    break
                on_event({"event": "tick"})  # refreshes elapsed time and the estimate
                if time.monotonic() > deadline:
                    timed_out = True
                    proc.kill()
                    continue
                time.sleep(0.2)
        except BaseException:  # Ctrl-C reaches the child too; make sure it is gone before we go
            proc.kill()
            raise
        tail = paths[2].read_text(errors="replace").rstrip().splitlines()
    if rc in (-signal.SIGINT, 130) and done is None:
        raise KeyboardInterrupt
    return {"returncode": rc, "timed_out": timed_out, "done": done,
            "stderr_tail": "\n".join(tail[-STDERR_TAIL_LINES:])}


def _pump(stream, lines: queue.Queue) -> None:
    """Lines of a child's stdout into a queue (None at its end), so the parent can also watch the clock."""
    for line in stream:
        lines.put(line)
    lines.put(None)


# -- progress on stderr --------------------------------------------------------------------------

def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """One redrawn line on a terminal; on a log (nox, CI) a line per change, steps at most every few seconds."""

    def __init__(self, total: int, to_run: int, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total, self.to_run = total, to_run
        self.durations: list[float] = []
        self.index, self.name, self.detail, self.cell_start, self.last_print = 0, "", "", 0.0, 0.0

    def eta(self) -> str:
        if not self.durations:
            return "?"
        left = sum(self.durations) / len(self.durations) * max(self.to_run - len(self.durations), 0)
        return _hms(left - (time.monotonic() - self.cell_start if self.cell_start else 0))

    def _line(self) -> str:
        filled = int(20 * (self.index - 1) / max(self.total, 1))
        bar = "#" * filled + "." * (20 - filled)
        elapsed = _hms(time.monotonic() - self.cell_start) if self.cell_start else "-"
        return f"[{bar}] {self.index}/{self.total} {self.name} | {self.detail} | {elapsed} | ETA {self.eta()}"

    def _show(self, force: bool = False) -> None:
        if self.tty:
            self.stream.write("\r" + self._line()[:200] + "\x1b[K")
        elif force or time.monotonic() - self.last_print >= 5.0:
            self.stream.write(self._line() + "\n")
            self.last_print = time.monotonic()
        self.stream.flush()

    def start(self, index: int, name: str) -> None:
        self.index, self.name, self.detail, self.cell_start = index, name, "starting", time.monotonic()
        self._show(force=True)

    def event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "phase":
            self.detail = event.get("phase", "")
            self._show(force=True)
            return
        if kind == "step":
            last = f" ({event['seconds']:.2f} s)" if isinstance(event.get("seconds"), (int, float)) else ""
            what = "warm-up" if event.get("warmup") else "step"
            self.detail = f"{what} {event.get('i')}/{event.get('total')}{last}"
        self._show()

    def finish(self, index: int, name: str, status: str, note: str = "", ran: bool = True) -> None:
        if ran and self.cell_start:
            self.durations.append(time.monotonic() - self.cell_start)
        self.cell_start = 0.0
        text = f"{index}/{self.total} {name}: {status}" + (f" ({note})" if note else "")
        self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.stream.flush()


# -- the sweep -----------------------------------------------------------------------------------

def _header(cell: Cell, cfg: RunConfig, machine: Machine, run_id: str) -> dict:
    return {"series": cell.series, "profile": cell.profile, "key": cell.key, "cell": cell.axes(),
            "repeats": cell.repeats, "config": cfg.as_dict(), "n_params": cell.n_params,
            "machine_id": machine.machine_id, "run_id": run_id}


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sweep(experiment: Experiment, profile: str | None = None, results_dir: str | os.PathLike = "results",
          force: bool = False, only_models: list[str] | None = None, dry_run: bool = False,
          machine: Machine | None = None, stream=None, redo_before: str | None = None) -> dict:
    """Run (or with dry_run, list) the cells not yet recorded; returns counts by status and the file written.

    `redo_before` (UTC, 2026-11-23T10:00:00Z) runs again the cells recorded before it: a --force that
    can be split over several invocations, each resuming where the last stopped.
    """
    stream = stream or sys.stderr
    machine = machine or detect_machine()
    profile = experiment.choose_profile(profile, machine.cuda_available)
    cells = experiment.cells(profile, only_models)
    for cell in cells:  # refuse a GPU profile on a machine without one before anything runs
        device = resolve_device(cell.config.device, machine)
        if device.startswith("cuda"):
            index = int(device.split(":")[1])
            if not machine.cuda_available or index not in machine.gpu_total_bytes:
                raise UserError(f"{experiment.file}: profile '{profile}' runs on {device}, which this machine does "
                                f"not have (torch.cuda.is_available() is {machine.cuda_available}); try --profile cpu")

    store = Path(results_dir) / experiment.name / machine.machine_id
    recorded = {} if force else {r.get("key"): r for r in results.latest_rows(
        [row for f in results.sweep_files(results_dir, experiment.name, machine.machine_id)
         for row in results.read_rows(f)]) if redo_before is None or (r.get("finished_utc") or "") >= redo_before}
    oom_at: dict = {}  # group -> (n_params, model) of the smallest model that ran out of memory
    for row in recorded.values():
        if row.get("status") == "oom" and row.get("profile") == profile:
            _note_oom(oom_at, _group_of_row(row), row.get("n_params") or 0, row["cell"]["model"])

    out_file = results.new_sweep_file(results_dir, experiment.name, machine.machine_id)
    counts: dict = {}
    to_run = sum(c.key not in recorded for c in cells)
    progress = Progress(len(cells), to_run, stream)
    print(f"zo2bench sweep: {experiment.name} profile '{profile}' on {machine.machine_id}: {len(cells)} cells, "
          f"{len(cells) - to_run} recorded earlier, {to_run} to go -> {store}", file=stream)

    # ZO2BENCH_ZYGOTE=0: each cell in a new interpreter (slower to start; for comparing the two launch paths)
    use_zygote = hasattr(os, "fork") and os.environ.get("ZO2BENCH_ZYGOTE", "1") != "0"
    zygote = Zygote() if use_zygote and to_run and not dry_run else None
    try:
        _cells(cells, recorded, oom_at, machine, out_file, progress, counts, dry_run, zygote)
    except KeyboardInterrupt:  # every finished cell is already on disk; say so, and how to go on
        kept = len(results.read_rows(out_file)) if out_file.exists() else 0
        print(("\n" if progress.tty else "") + f"zo2bench sweep: interrupted; {kept} rows of this run kept"
              + (f" in {out_file}" if kept else "") + "; the same command resumes where it stopped", file=stream)
        raise
    finally:
        if zygote is not None:
            zygote.close()
    written = str(out_file) if out_file.exists() else None
    shown = ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to do"
    print(f"zo2bench sweep: {experiment.name}/{profile}: {shown}" + (f"; rows in {written}" if written else ""),
          file=stream)
    return {"series": experiment.name, "profile": profile, "machine_id": machine.machine_id, "cells": len(cells),
            "counts": counts, "file": written}


def _cells(cells, recorded, oom_at, machine, out_file, progress, counts, dry_run, zygote=None) -> None:
    """The loop over cells: each recorded earlier, skipped, infeasible, listed (dry run) or run."""
    for i, cell in enumerate(cells, 1):
        run_id = uuid.uuid4().hex
        cfg = cell.config.replace(device=resolve_device(cell.config.device, machine))
        header = _header(cell, cfg, machine, run_id)
        if cell.key in recorded:
            counts["recorded"] = counts.get("recorded", 0) + 1
            progress.finish(i, cell.name, f"recorded earlier ({recorded[cell.key].get('status')})", ran=False)
            continue
        smaller = oom_at.get(cell.group)
        infeasible = feasibility(cfg, cell.n_params, machine)
        if smaller and cell.n_params >= smaller[0]:
            status, reason, fields = "skipped", (f"{smaller[1]} ({smaller[0]:,} params) ran out of GPU memory in the "
                                                 f"same mode, dtype, batch and seq; this model is not smaller"), {}
        elif infeasible:
            status, reason, fields = "infeasible", infeasible["reason"], {"feasibility": infeasible}
        elif dry_run:
            status, reason = "would run", None
        else:
            status, reason = _run_cell(i, cell, header, machine, out_file, progress, zygote)
            fields = None  # the cell wrote its own row (or _run_cell wrote the error row)
        if dry_run:
            progress.finish(i, cell.name, status, reason or "", ran=False)
            counts[status] = counts.get(status, 0) + 1
            continue
        if fields is not None:
            now = _utc()
            results.append_row(out_file, results.sweep_row(header, status, reason, started_utc=now, finished_utc=now,
                                                           wall_s=0.0, fingerprint=machine.fingerprint, **fields))
            progress.finish(i, cell.name, status, reason, ran=False)
        if status == "oom":
            _note_oom(oom_at, cell.group, cell.n_params, cell.config.model)
        counts[status] = counts.get(status, 0) + 1


def _note_oom(oom_at: dict, group: tuple, n_params: int, model: str) -> None:
    if group not in oom_at or n_params < oom_at[group][0]:
        oom_at[group] = (n_params, model)


def _group_of_row(row: dict) -> tuple:
    c = row.get("cell", {})
    return (row.get("profile"), c.get("mode"), c.get("dtype"), c.get("batch"), c.get("seq"))


def _run_cell(i: int, cell: Cell, header: dict, machine: Machine, out_file: Path, progress: Progress,
              zygote: Zygote | None = None):
    """Launch one cell; when it died without writing its row, write an `error` row with its stderr's tail."""
    payload = {"header": header, "results_file": str(out_file), "fingerprint": machine.fingerprint,
               "event_prefix": EVENT_PREFIX}
    progress.start(i, cell.name)
    started, t0 = _utc(), time.monotonic()
    outcome = launch_cell(payload, cell.timeout_s, progress.event, zygote=zygote)
    done = outcome["done"]
    if done is None and out_file.exists():  # it may have written its row and died just after
        mine = [r for r in results.read_rows(out_file) if r.get("run_id") == header["run_id"]]
        done = {"status": mine[-1]["status"], "reason": mine[-1].get("reason")} if mine else None
    if done is not None:
        first_line = ((done.get("reason") or "").splitlines() or [""])[0][:160]
        progress.finish(i, cell.name, done["status"], first_line)
        return done["status"], done.get("reason")
    rc = outcome["returncode"]
    why = (f"timed out after {cell.timeout_s:g} s (cell_timeout_s)" if outcome["timed_out"] else
           f"killed by signal {-rc}" + (" (SIGKILL: the host may have run out of memory)" if rc == -9 else "")
           if rc < 0 else f"the cell process exited with status {rc}")
    reason = f"{why}; last lines of its stderr:\n{outcome['stderr_tail']}"
    results.append_row(out_file, results.sweep_row(header, "error", reason, started_utc=started,
                                                   finished_utc=_utc(), wall_s=round(time.monotonic() - t0, 3),
                                                   fingerprint=machine.fingerprint))
    progress.finish(i, cell.name, "error", why)
    return "error", reason
