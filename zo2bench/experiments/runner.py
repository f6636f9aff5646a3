"""The sweep: each cell of one experiment profile in a fresh process, one row appended as each cell ends.

    zo2bench sweep experiments/memory_scaling.toml                 # profile: "gpu" with CUDA, else "cpu"
    zo2bench sweep experiments/memory_scaling.toml --profile cpu --only-models opt-tiny --force

    summary = sweep(spec.load(path), profile=None, results_dir="results")
    summary["failed"]                                              # cells whose latest row is a failure

A fresh process per cell (launch.py); a distributed cell (grid.parallel) is one launch of its ranks from that
process (experiments/dist_cell.py), so that a peak belongs to one cell and a crash or an out-of-memory
ends one cell, not the sweep; cells fork from a zygote that has done the imports, and when the zygote
fails to start or dies, each cell starts in a new interpreter (said once; the zygote's stderr is kept in
<rows file>.zygote.log). Before launching, a cell is `infeasible` when its weights cannot fit (exact bytes
against psutil's host total or the GPU's total, then the host memory it will pin against what is free now,
probes/hostmem.py) or it needs more GPUs than there are, and `skipped` when a smaller model of its group (same
mode, dtype, batch, seq) ran out of GPU memory.

Resuming: the latest row of each cell under results/<series>/<machine_id>/ stands, unless --force, unless
it is a failure (error, timeout, nonfinite: run again, retry_failed=False keeps them), and unless it is a
skip whose out-of-memory no longer stands. An interrupted sweep resumes where it stopped and loses nothing;
torn lines left by a crash are set aside (results.set_aside_torn). One sweep at a time holds a results
folder (guard.SweepLock), and its processes end with it. It ends with a table of what each cell measured.
"""
from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from zo2bench import results
from zo2bench.config import DTYPE_BYTES, ZO_MODES, RunConfig
from zo2bench.errors import UserError
from zo2bench.experiments import guard
from zo2bench.experiments.launch import EVENT_PREFIX, Zygote, launch_cell
from zo2bench.experiments.progress import LEGEND, Progress, render_table
from zo2bench.experiments.spec import Cell, Experiment

GiB = 2**30
FAILED = ("error", "timeout", "nonfinite")  # run again on resume; oom, infeasible and skipped are results
SHOWN_ORDER = ("recorded", "ok", "oom", "skipped", "infeasible", "would run", "would run again", *FAILED)


@dataclass(frozen=True)
class Machine:
    """What the runner needs to know about where it runs: results directory name and memory totals."""

    machine_id: str
    fingerprint: dict
    host_total_bytes: int
    cuda_available: bool
    gpu_total_bytes: dict = field(default_factory=dict)  # device index -> torch total_memory
    host_available_bytes: int | None = None  # None: read before each cell (probes/hostmem.py); tests set it


def detect_machine() -> Machine:
    import psutil
    import torch

    from zo2bench.probes.fingerprint import fingerprint, machine_id

    cuda = torch.cuda.is_available()
    fp = fingerprint("cuda:0" if cuda else None)
    gpus = {i: torch.cuda.get_device_properties(i).total_memory
            for i in range(torch.cuda.device_count())} if cuda else {}
    return Machine(machine_id(fp), fp, psutil.virtual_memory().total, cuda, gpus)


def resolve_device(device: str, machine: Machine, ranks: int = 1) -> str:
    """The project's device rules (zo2bench.devices) on this machine: "cpu" or "cuda:N", as a row records it;
    a distributed cell (ranks > 1) "cpu" or "cuda" (each rank takes the GPU of its local rank)."""
    from zo2bench.devices import device_string

    name = device_string(device, len(machine.gpu_total_bytes) or int(machine.cuda_available))
    return name if ranks == 1 else name.split(":")[0]


def _gpu_shortfall(cfg: RunConfig, machine: Machine) -> dict | None:
    """A distributed cell on more GPUs than this machine has: infeasible here (one rank a GPU)."""
    have = len(machine.gpu_total_bytes) or int(machine.cuda_available)
    if cfg.nproc_per_node <= 1 or cfg.device == "cpu" or cfg.nproc_per_node <= have:
        return None
    return {"reason": f"{cfg.nproc_per_node} ranks, one a GPU, but this machine has {have} GPU(s)",
            "need_gpus": cfg.nproc_per_node, "have_gpus": have, "where": "gpus"}


def feasibility(cfg: RunConfig, n_params: int, machine: Machine) -> dict | None:
    """None if the cell's weights (or fo-*'s model states) can fit, else why not, with the arithmetic."""
    if cfg.mode in ZO_MODES:
        per, what = DTYPE_BYTES[cfg.dtype], f"{cfg.dtype} weights ({DTYPE_BYTES[cfg.dtype]} B/param)"
    elif cfg.mode == "fo-adamw":
        per, what = 16, "fp32 master weights + grads + 2 Adam moments (4+4+4+4 = 16 B/param)"
    else:  # fo-sgd: no optimizer state
        per, what = 8, "fp32 master weights + grads (4+4 = 8 B/param)"
    device = cfg.device
    if cfg.nproc_per_node > 1 and where_host(cfg):  # per host, counted by host_feasibility
        return None
    if cfg.mode == "zo2" or device == "cpu":  # zo2 keeps every block in host memory; cpu runs hold all there
        where, limit, source = "host", machine.host_total_bytes, "psutil virtual_memory().total"
    else:
        where, source = device, "torch total_memory"
        limit = machine.gpu_total_bytes.get(int(device.split(":")[1]) if ":" in device else 0)
    share = cfg.weight_shard if cfg.mode == "mezo" and cfg.weight_shard > 1 else 1  # resident shards, 1/W a GPU
    need = n_params * per // share
    if limit is None or need <= limit:
        return None
    reason = (f"{cfg.mode} keeps {what} in {where} memory: {n_params:,} params x {per} B"
              + (f" / {share} ranks" if share > 1 else "") + f" = {need:,} B "
              f"({need / GiB:.1f} GiB) > {limit:,} B ({limit / GiB:.1f} GiB) {where} total ({source})")
    return {"reason": reason, "need_bytes": need, "limit_bytes": limit, "where": where}


def where_host(cfg: RunConfig) -> bool:
    return cfg.mode == "zo2" or cfg.device == "cpu"


def host_memory(cfg: RunConfig, machine: Machine) -> dict | None:
    """The cell's host memory (probes/hostmem.py) against what is free now (or the machine's given figure)."""
    from zo2bench.probes.hostmem import host_feasibility

    given = machine.host_available_bytes
    free = None if given is None else {"bytes": given, "source": "the sweep's machine description"}
    return host_feasibility(cfg, available=free)


# -- the sweep -----------------------------------------------------------------------------------

def _header(cell: Cell, cfg: RunConfig, machine: Machine, run_id: str, allow_dirty: bool) -> dict:
    return {"series": cell.series, "profile": cell.profile, "key": cell.key, "cell": cell.axes(),
            "repeats": cell.repeats, "config": cfg.as_dict(), "n_params": cell.n_params,
            "machine_id": machine.machine_id, "run_id": run_id, **({"allow_dirty": True} if allow_dirty else {}),
            **({"convergence": cell.settings} if cell.settings is not None else {})}


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sweep(experiment: Experiment, profile: str | None = None, results_dir: str | os.PathLike = "results",
          force: bool = False, only_models: list[str] | None = None, dry_run: bool = False,
          machine: Machine | None = None, stream=None, redo_before: str | None = None,
          retry_failed: bool = True, dirty_code: str = "ignore") -> dict:
    """Run (or with dry_run, list) the cells whose rows do not stand; returns what this run did and what is held.

    `redo_before` (UTC, 2026-11-23T10:00:00Z) runs again the cells recorded before it: a --force that
    can be split over several invocations, each resuming where the last stopped. `dirty_code`: "refuse" a
    package with uncommitted changes (guard.uncommitted_changes), "allow" it and mark each row
    "allow_dirty": true, or "ignore" (no check: tests, the smoke series). Returns {"counts": this run's outcomes
    by status (and "recorded" for rows that stand), "held": the latest status of every cell by status,
    "failed", "retried", "file": this run's rows or None, "store": the folder of every run's rows, ...}.
    """
    stream = stream or sys.stderr
    machine = machine or detect_machine()
    profile = experiment.choose_profile(profile, machine.cuda_available, gpus=len(machine.gpu_total_bytes))
    cells = experiment.cells(profile, only_models)
    for cell in cells:  # refuse a GPU profile on a machine without one before anything runs
        try:
            resolve_device(cell.config.device, machine, cell.config.nproc_per_node)
        except UserError as e:
            raise UserError(f"{experiment.file}: profile '{profile}' runs on {cell.config.device}, which this machine "
                            f"does not have ({e}); try --profile cpu") from None
    dirty = None if dry_run or dirty_code == "ignore" else guard.uncommitted_changes()
    if dirty and dirty_code == "refuse":
        raise UserError(f"{experiment.file}: {dirty}; its rows would not name the code that made them: commit "
                        f"first, or pass --allow-dirty (the rows then say allow_dirty)")
    allow_dirty = bool(dirty)
    store = Path(results_dir) / experiment.name / machine.machine_id
    lock = None if dry_run else guard.SweepLock(store).acquire()  # UserError naming the sweep that holds it
    try:
        return _sweep(experiment, profile, cells, results_dir, store, machine, stream, lock, force, dry_run,
                      redo_before, retry_failed, allow_dirty)
    finally:
        if lock is not None:
            lock.release()


def _sweep(experiment, profile, cells, results_dir, store, machine, stream, lock, force, dry_run, redo_before,
           retry_failed, allow_dirty) -> dict:
    if not dry_run:  # under the lock: no one appends to these files now
        for f in results.sweep_files(results_dir, experiment.name, machine.machine_id):
            torn = results.set_aside_torn(f)
            if torn:
                print(f"zo2bench sweep: {f}: set aside {torn['bytes']} bytes of torn row(s) (line "
                      f"{', '.join(map(str, torn['lines']))}) in {torn['side_file'].name}; the file is whole again",
                      file=stream)
    latest = _latest(results_dir, experiment.name, machine.machine_id)
    stands, retry, oom_at = _plan(latest, profile, force, redo_before, retry_failed)

    out_file = results.new_sweep_file(results_dir, experiment.name, machine.machine_id)
    to_run = sum(c.key not in stands for c in cells)
    progress = Progress(len(cells), to_run, stream)
    print(f"zo2bench sweep: {experiment.name} profile '{profile}' on {machine.machine_id}: {len(cells)} cells, "
          f"{len(cells) - to_run} recorded earlier, {to_run} to go"
          + (f" ({sum(c.key in retry for c in cells)} of them failed before)" if any(c.key in retry for c in cells)
             else "") + f" -> {store}", file=stream)

    # ZO2BENCH_ZYGOTE=0: each cell in a new interpreter (slower to start; for comparing the two launch paths)
    use_zygote = hasattr(os, "fork") and os.environ.get("ZO2BENCH_ZYGOTE", "1") != "0"
    launcher = None if dry_run else _Launcher(use_zygote, Path(f"{out_file}.zygote.log"),
                                              (lock.fd,) if lock else (), progress)
    counts: dict = {}
    try:
        retried = _cells(cells, stands, retry, oom_at, machine, out_file, progress, counts, dry_run, launcher,
                         allow_dirty)
    except KeyboardInterrupt:  # every finished cell is already on disk; say so, and how to go on
        kept = len(results.read_rows(out_file)) if out_file.exists() else 0
        progress.note(f"zo2bench sweep: interrupted; {kept} rows of this run kept" + (f" in {out_file}" if kept else "")
                      + "; the same command resumes where it stopped")
        raise
    finally:
        if launcher is not None:
            launcher.close()
    written = str(out_file) if out_file.exists() else None
    latest = _latest(results_dir, experiment.name, machine.machine_id) if written else latest
    held = [latest[c.key] for c in cells if c.key in latest]
    held_counts = _ordered(Counter(r.get("status") for r in held))
    failed = {s: n for s, n in held_counts.items() if s in FAILED}
    if not dry_run and held and experiment.kind == "convergence":
        from zo2bench.convergence.summary import LEGEND as CONVERGENCE_LEGEND
        from zo2bench.convergence.summary import render_table as convergence_table

        print(f"zo2bench sweep: what each cell measured (its latest row)\n{convergence_table(held)}\n"
              f"({CONVERGENCE_LEGEND})", file=stream)
    elif not dry_run and held:
        print(f"zo2bench sweep: what each cell measured (its latest row)\n{render_table(held)}\n({LEGEND})",
              file=stream)
    print(_summary_line(f"{experiment.name}/{profile}", len(cells), held_counts, counts, retried, store,
                        written and out_file.name), file=stream)
    return {"series": experiment.name, "profile": profile, "machine_id": machine.machine_id, "cells": len(cells),
            "counts": counts, "held": dict(held_counts), "failed": sum(failed.values()), "retried": retried,
            "file": written, "store": str(store)}


def _summary_line(what: str, n_cells: int, held: dict, counts: dict, retried: int, store: Path,
                  this_file: str | None) -> str:
    """What the series holds now (failures apart), what this run did, and where the rows are."""
    failed = {s: n for s, n in held.items() if s in FAILED}
    shown = [f"{n} {s}" for s, n in held.items() if s not in FAILED]
    if failed:
        shown.append(f"{sum(failed.values())} failed (" + ", ".join(f"{n} {s}" for s, n in failed.items()) + ")")
    ran = ", ".join(f"{n} {s}" for s, n in _ordered(counts).items() if s != "recorded") or "nothing run"
    where = f"; rows in {store}/" + (f" (this run: {this_file})" if this_file else "") if held else ""
    return (f"zo2bench sweep: {what}: {sum(held.values())} of {n_cells} cells recorded"
            + (f": {', '.join(shown)}" if shown else "") + f"; this run: {ran}"
            + (f" ({retried} retried)" if retried else "") + where)


def _ordered(counts: dict) -> dict:
    rank = {s: i for i, s in enumerate(SHOWN_ORDER)}
    return dict(sorted(counts.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def _latest(results_dir, series: str, machine_id: str) -> dict:
    """key -> the latest row of that cell recorded on this machine."""
    rows = [row for f in results.sweep_files(results_dir, series, machine_id) for row in results.read_rows(f)]
    return {r.get("key"): r for r in results.latest_rows(rows)}


def _plan(latest: dict, profile: str, force: bool, redo_before: str | None, retry_failed: bool):
    """The rows that stand (their cells are not run), the failures to retry, and the out-of-memory groups."""
    stands = {} if force else {k: r for k, r in latest.items()
                               if redo_before is None or (r.get("finished_utc") or "") >= redo_before}
    retry = {k: r for k, r in stands.items() if retry_failed and r.get("status") in FAILED}
    oom_at: dict = {}  # group -> (n_params, model) of the smallest model that ran out of memory
    for row in stands.values():
        if row.get("status") == "oom" and row.get("profile") == profile:
            _note_oom(oom_at, _group_of_row(row), row.get("n_params") or 0, row["cell"]["model"])
    for k, row in stands.items():  # a skip stands while the out-of-memory it follows does
        smaller = oom_at.get(_group_of_row(row))
        if row.get("status") == "skipped" and not (smaller and (row.get("n_params") or 0) >= smaller[0]):
            retry[k] = row
    return {k: r for k, r in stands.items() if k not in retry}, retry, oom_at


def _cells(cells, stands, retry, oom_at, machine, out_file, progress, counts, dry_run, launcher,
           allow_dirty) -> int:
    """The loop over cells: each recorded earlier, skipped, infeasible, listed (dry run) or run. Returns retries."""
    retried = 0
    for i, cell in enumerate(cells, 1):
        run_id = uuid.uuid4().hex
        cfg = cell.config.replace(device=resolve_device(cell.config.device, machine, cell.config.nproc_per_node))
        header = _header(cell, cfg, machine, run_id, allow_dirty)
        if cell.key in stands:
            counts["recorded"] = counts.get("recorded", 0) + 1
            progress.finish(i, cell.name, f"recorded earlier ({stands[cell.key].get('status')})", ran=False)
            continue
        before = retry.get(cell.key, {}).get("status")
        again = f"was {before}" if before else ""
        smaller = oom_at.get(cell.group)
        # convergence cells (settings) train the ladder's small shapes, which the catalog does not hold
        measure_host = cell.settings is None and not (smaller and cell.n_params >= smaller[0])
        infeasible = (_gpu_shortfall(cfg, machine) or feasibility(cfg, cell.n_params, machine)
                      or (host_memory(cfg, machine) if measure_host else None))
        if smaller and cell.n_params >= smaller[0]:
            status, reason, fields = "skipped", (f"{smaller[1]} ({smaller[0]:,} params) ran out of GPU memory in the "
                                                 f"same mode, dtype, batch and seq; this model is not smaller"), {}
        elif infeasible:
            status, reason, fields = "infeasible", infeasible["reason"], {"feasibility": infeasible}
        elif dry_run:
            status, reason = ("would run again" if before else "would run"), again or None
        else:
            status, reason = _run_cell(i, cell, header, machine, out_file, progress, launcher, again)
            fields = None  # the cell wrote its own row (or _run_cell wrote the error row)
        retried += bool(before) and not dry_run
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
    return retried


def _note_oom(oom_at: dict, group: tuple, n_params: int, model: str) -> None:
    if group not in oom_at or n_params < oom_at[group][0]:
        oom_at[group] = (n_params, model)


def _group_of_row(row: dict) -> tuple:
    c = row.get("cell", {})
    return (row.get("profile"), c.get("mode"), c.get("dtype"), c.get("batch"), c.get("seq"), c.get("parallel"))


class _Launcher:
    """Cells forked from the zygote while it works; after it fails, each in a new interpreter (said once)."""

    def __init__(self, use_zygote: bool, log_path: Path, pass_fds: tuple, progress: Progress):
        self.zygote = Zygote(log_path, pass_fds) if use_zygote else None
        self.pass_fds, self.progress = pass_fds, progress

    def launch(self, payload: dict, timeout_s: float, on_event) -> dict:
        outcome = launch_cell(payload, timeout_s, on_event, zygote=self.zygote, pass_fds=self.pass_fds)
        if outcome.get("zygote_failed") and self.zygote is not None:
            self.zygote.close()
            self.zygote = None
            self.progress.note(f"zo2bench sweep: warning: {outcome['zygote_failed']}; from now on each cell "
                               f"starts in a new interpreter (slower to start, the same measurement)")
        return outcome

    def close(self) -> None:
        if self.zygote is not None:
            self.zygote.close()


def _own_row(out_file: Path, run_id: str) -> dict | None:
    """The outcome in the row a cell wrote, for a cell that died (or lost its zygote) just after writing it."""
    mine = [r for r in results.read_rows(out_file) if r.get("run_id") == run_id] if out_file.exists() else []
    return {"status": mine[-1]["status"], "reason": mine[-1].get("reason")} if mine else None


def _run_cell(i: int, cell: Cell, header: dict, machine: Machine, out_file: Path, progress: Progress,
              launcher: _Launcher, again: str = ""):
    """Launch one cell; when it died without writing its row, write an `error` row with its stderr's tail."""
    # no fingerprint: the cell takes its own, once, for its device
    payload = {"header": header, "results_file": str(out_file), "event_prefix": EVENT_PREFIX}
    progress.start(i, cell.name + (f" ({again})" if again else ""))
    started, t0 = _utc(), time.monotonic()
    outcome = launcher.launch(payload, cell.timeout_s, progress.event)
    done = outcome["done"] or _own_row(out_file, header["run_id"])
    if done is None and outcome.get("zygote_failed"):  # the zygote failed, not the cell: once more on its own
        progress.event({"event": "phase", "phase": "starting again in a new interpreter"})
        started, t0 = _utc(), time.monotonic()
        outcome = launcher.launch(payload, cell.timeout_s, progress.event)
        done = outcome["done"] or _own_row(out_file, header["run_id"])
    note = f"; {again}" if again else ""
    if done is not None:
        first_line = ((done.get("reason") or "").splitlines() or [""])[0][:160]
        progress.finish(i, cell.name, done["status"], first_line + (note if first_line else again))
        return done["status"], done.get("reason")
    rc = outcome["returncode"]
    why = (f"timed out after {cell.timeout_s:g} s (cell_timeout_s)" if outcome["timed_out"] else
           f"killed by signal {-rc}" + (" (SIGKILL: the host may have run out of memory)" if rc == -9 else "")
           if rc < 0 else f"the cell process exited with status {rc}")
    reason = f"{why}; last lines of its stderr:\n{outcome['stderr_tail']}"
    results.append_row(out_file, results.sweep_row(header, "error", reason, started_utc=started,
                                                   finished_utc=_utc(), wall_s=round(time.monotonic() - t0, 3),
                                                   fingerprint=machine.fingerprint))
    progress.finish(i, cell.name, "error", why + note)
    return "error", reason
