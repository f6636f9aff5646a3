"""One sweep cell, in a process of its own: probes started, the trainer run, probes stopped, one row appended.

    python -m zo2bench.experiments.cell --payload PAYLOAD.json   # what the runner launches for every cell

The payload (written by runner.py) holds the row's head (series, profile, key, config, ...) and the JSON-lines
file to append to. The row's fingerprint is taken here, once, for the cell's own device (its GPU's UUID
and bus id), after the run. Progress goes to stdout as lines "@zo2bench {json}" that the
runner relays to its progress bar; whatever else the libraries print goes to stderr. The cell records its own
outcome (ok, oom, nonfinite, error) so that a finished cell is kept even if the runner dies; a cell that dies
without a row is recorded as `error` by the runner, with the tail of this process's stderr.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback

from zo2bench import results
from zo2bench.config import RunConfig
from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss, UserError


def _emitter(prefix: str):
    """Progress lines on the real stdout; sys.stdout itself is pointed at stderr so stray prints stay out."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr

    def emit(event: str, **fields) -> None:
        out.write(prefix + json.dumps({"event": event, **fields}, default=str) + "\n")
        out.flush()

    return emit


def _loss(step: dict):
    """fo-*: the loss; zo: the mean of loss+ and loss-, which is f(theta) to second order in eps."""
    if "loss" in step:
        return step["loss"]
    plus, minus = step.get("loss_plus"), step.get("loss_minus")
    return None if plus is None or minus is None else (plus + minus) / 2


def measured_fields(record: dict, cfg: RunConfig, repeat: int, repeats: int) -> dict:
    """What a row keeps of a run record: step-time statistics, throughput, losses and the record's sections."""
    from zo2bench.stats import summarize

    steps = record.get("steps", [])
    seconds = [s["seconds"] for s in steps if not s.get("warmup")]
    stats = summarize(seconds) if seconds else {}
    median = stats.get("median")
    out = {
        "step_time_s": {**stats, "repeat": repeat, "repeats": repeats},
        "tokens_per_s": cfg.batch * cfg.seq / median if median else None,  # B*T tokens per ZO step (2 forwards)
        "build_seconds": record.get("build", {}).get("seconds"),
        "losses": [_loss(s) for s in steps],
        "steps": steps,
    }
    skip = {"schema_version", "kind", "status", "config", "fingerprint", "memory", *out}
    out.update({k: v for k, v in record.items() if k not in skip})  # model, build, final_params_sha256, ...
    return out


def run_cell(payload: dict, emit) -> dict:
    """Run the configured cell and return its row; never raises for what the run itself hits."""
    header = payload["header"]
    if "convergence" in header:  # a fine-tuning run to a target (experiment files of kind = "convergence")
        from zo2bench.convergence.cell import run_cell as run_convergence_cell

        return run_convergence_cell(payload, emit)
    cfg = RunConfig.from_dict(header["config"])
    if cfg.nproc_per_node > 1:
        return _launched_cell(header, cfg, emit)
    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    status, reason, fields = "ok", None, {}
    probes, summary, torch_peaks, fp = None, None, {}, None
    try:
        from zo2bench.engine import offload
        from zo2bench.measure import measured_run as run
        from zo2bench.probes import ProbeSet

        # pinned_bytes: what the engine holds page-locked, shown in the host view beside RSS
        probes = ProbeSet(device=cfg.device, interval_s=0.02, pinned_bytes=offload.pinned_bytes)
        probes.start()

        def on_phase(name: str) -> None:
            probes.phase(name)
            emit("phase", phase=name)

        def on_step(i: int, total: int, step: dict) -> None:
            emit("step", i=i + 1, total=total, warmup=bool(step.get("warmup")), seconds=step.get("seconds"))
            loss = _loss(step)
            if loss is not None and not math.isfinite(loss):
                emit("phase", phase=f"non-finite loss at step {i + 1}")

        try:
            record = run(cfg, on_phase=on_phase, on_step=on_step)
        finally:
            summary = probes.stop()
        torch_peaks, fp = record.get("memory", {}), record.get("fingerprint")
        fields = measured_fields(record, cfg, header["cell"]["repeat"], header["repeats"])
    except GPUOutOfMemory as e:
        status, reason, fields = "oom", str(e), {"oom": e.as_dict()}
    except NonFiniteLoss as e:
        status, reason = "nonfinite", str(e)
    except UserError as e:
        status, reason = "error", str(e)
    except Exception:
        status, reason = "error", "".join(traceback.format_exc().splitlines(True)[-20:])
    if probes is not None and summary is None:  # the failure came before the trainer returned
        try:
            summary = probes.stop()
        except Exception:
            pass
    if fp is None:  # the run failed: describe the machine all the same
        from zo2bench.probes.fingerprint import fingerprint

        fp = fingerprint(cfg.device)
    views = None
    if probes is not None and summary is not None:
        try:  # per phase of the run; without one (an early failure) the whole window
            views = {ph: probes.memory_views(torch_peaks.get(ph), ph) for ph in (torch_peaks or {"overall": {}})}
        except Exception as e:  # a probe that cannot say is noted, never a reason to lose the row
            views = {"error": f"{type(e).__name__}: {e}"}
    return results.sweep_row(
        header, status, reason, **fields, probes=summary, memory={"torch": torch_peaks, "views": views},
        fingerprint=fp, started_utc=started,
        finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), wall_s=round(time.monotonic() - t0, 3))


def _launched_cell(header: dict, cfg: RunConfig, emit) -> dict:
    """A distributed cell: one launch of its ranks (dist_cell.py); the row holds rank 0's merged record."""
    from zo2bench.experiments.dist_cell import launched_run

    started, t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    record, fields = None, {}
    try:
        status, reason, record = launched_run(cfg, emit)
        if record is not None:
            fields = measured_fields(record, cfg, header["cell"]["repeat"], header["repeats"])
    except UserError as e:
        status, reason = "error", str(e)
    except Exception:
        status, reason = "error", "".join(traceback.format_exc().splitlines(True)[-20:])
    if record is None:
        from zo2bench.probes.fingerprint import fingerprint

        fp = fingerprint(None if cfg.device == "cpu" else "cuda:0")
    else:
        fp = record["fingerprint"]
    probes = {"not_measured": {"all": "a distributed cell's ranks are separate processes; their allocator peaks "
                                      "are in memory.torch (the largest rank's) and distributed.ranks"}}
    return results.sweep_row(
        header, status, reason, **fields, probes=probes,
        memory={"torch": (record or {}).get("memory", {}), "views": None}, fingerprint=fp, started_utc=started,
        finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), wall_s=round(time.monotonic() - t0, 3))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zo2bench.experiments.cell", description=__doc__.splitlines()[0])
    parser.add_argument("--payload", required=True, help="JSON file written by the sweep runner")
    args = parser.parse_args(argv)
    with open(args.payload) as f:
        payload = json.load(f)
    emit = _emitter(payload.get("event_prefix", "@zo2bench "))
    try:
        row = run_cell(payload, emit)
    except KeyboardInterrupt:  # interrupted: no row, so that the resumed sweep runs this cell again
        return 130
    results.append_row(payload["results_file"], row)
    emit("done", status=row["status"], reason=row["reason"], key=row["key"])
    return 0


if __name__ == "__main__":
    from zo2bench.experiments.launch import die_with_parent

    die_with_parent()  # ends with the sweep that started it: no row appended behind a dead sweep's back
    sys.exit(main())
