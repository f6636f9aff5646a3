"""bench-step over several batch sizes and sequence lengths on one built model (`--batches`, `--seqs`).

    zo2bench bench-step --model opt-175b --mode zo2 --dtype fp16 --seq 2048 --batches 1,8 --out b.json
        # one build, then batch 1 and batch 8, each with its warm-up and measured steps:
        # b.batch1-seq2048.json and b.batch8-seq2048.json, one bench-step record each

Pinning OPT-175B's 350 GB takes minutes, so a run builds once (measure.BuildOnce) and measures each
configuration in turn, in the order given (every batch at the first seq, then at the next). Each record is
what a separate bench-step of that configuration writes (its config, steps, step-time statistics, floors,
allocator peaks reset at each configuration's phases) plus "shared_build":
- build_s: the one build's seconds, measured once; the record's own "build_s" is that figure in the first
  record and None in the others, so that a sum over records counts the build once;
- configurations, index, files: the configurations that shared it, this one's place, and their files;
- weights: "continued": configuration k starts from the weights configuration k-1 left (start_params_sha256),
  not from freshly built ones, and numbers its steps from 0 again. The first configuration's losses and
  final digest are a separate run's; a later one's are not (its timings and memory do not depend on the
  weights' values). Resetting would need a second copy of the weights in host memory.
"""
from __future__ import annotations

from pathlib import Path

from zo2bench.config import RunConfig
from zo2bench.errors import UserError

WEIGHTS_NOTE = ("continued: each configuration starts from the weights the previous one left and numbers its "
                "steps from 0 again; only the first configuration's losses and digest are a separate run's")


def parse_sizes(text: str | None, option: str) -> tuple[int, ...] | None:
    """"1,8" -> (1, 8); None stays None; anything else is one clear line."""
    if text is None:
        return None
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1 or len(set(sizes)) != len(sizes):
        raise UserError(f"{option} {text!r}: expected distinct positive whole numbers separated by commas, "
                        "e.g. 1,8")
    return sizes


def configurations(cfg: RunConfig, batches: tuple[int, ...] | None, seqs: tuple[int, ...] | None) -> list[RunConfig]:
    """cfg at every (seq, batch) asked for, batches varying fastest; [cfg] when neither list is given."""
    return [cfg.replace(batch=b, seq=s) for s in (seqs or (cfg.seq,)) for b in (batches or (cfg.batch,))]


def out_paths(out: str | None, cfgs: list[RunConfig]) -> list[str | None]:
    """One file per configuration: b.json -> b.batch1-seq2048.json, ...; "-" and None stay as they are."""
    if not out or out == "-" or len(cfgs) == 1:
        return [out] * len(cfgs)
    p = Path(out)
    return [str(p.with_name(f"{p.stem}.batch{c.batch}-seq{c.seq}{p.suffix or '.json'}")) for c in cfgs]


def measure_all(cfgs: list[RunConfig], measure, builder=None,
                keep_partial: bool = True) -> tuple[list, Exception | None]:
    """measure(cfg, build_once) for each configuration on one measure.BuildOnce(builder); the records
    measured, and the error that stopped the rest: with keep_partial, a GPU running out of memory at the
    largest batch keeps the smaller batches' records (one process; ranks stop together instead)."""
    from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss
    from zo2bench.measure import BuildOnce

    once, records, error = BuildOnce(builder), [], None
    try:
        for i, cfg in enumerate(cfgs):
            try:
                records.append(measure(cfg, once))
            except (UserError, GPUOutOfMemory, NonFiniteLoss) as e:
                if not (keep_partial and records):
                    raise
                error = UserError(f"configuration {i + 1} of {len(cfgs)} (batch {cfg.batch}, seq {cfg.seq}) "
                                  f"stopped: {e}; the {len(records)} before it are recorded")
                break
    finally:
        once.close()
    return records, error


def bench_steps(cfgs: list[RunConfig], calibration_path: str | None, results_dir: str,
                paths: list[str | None]) -> tuple[list[dict], Exception | None]:
    """One process: the bench-step records of every configuration on one build, and the error that
    stopped the rest (None when all ran)."""
    import sys

    from zo2bench.bench.step import bench_record
    from zo2bench.measure import measured_run

    raw: list[dict] = []

    def progress(i, total, row):
        print(f"\rbench-step: step {i + 1}/{total} {row['seconds'] * 1e3:8.1f} ms", end="", file=sys.stderr)

    def one(cfg, once):
        print(f"bench-step: configuration {len(raw) + 1} of {len(cfgs)}: batch {cfg.batch}, seq {cfg.seq}"
              + ("" if raw else " (building the model, shared by all)"), file=sys.stderr, flush=True)
        rec = measured_run(cfg, on_step=progress, timing=True, builder=once,
                           fingerprint=raw[0]["fingerprint"] if raw else None)
        print(file=sys.stderr)
        raw.append(rec)
        return rec

    _, error = measure_all(cfgs, one)
    records = [bench_record(r, calibration_path, results_dir) for r in raw]  # after the trainer let go
    return share(records, raw, paths), error


def share(records: list[dict], raw: list[dict], paths: list[str | None]) -> list[dict]:
    """Each bench-step record with "shared_build" (module docstring); raw: the measured runs' records."""
    build_s = raw[0]["build"]["seconds"]
    configs = [{"batch": r["config"]["batch"], "seq": r["config"]["seq"]} for r in raw]
    for i, rec in enumerate(records):
        rec["build_s"] = build_s if i == 0 else None
        rec["shared_build"] = {
            "build_s": build_s, "configurations": configs, "index": i,
            "files": [Path(p).name if p and p != "-" else None for p in paths[:len(records)]],
            "weights": WEIGHTS_NOTE,
            "start_params_sha256": raw[i - 1]["final_params_sha256"] if i else None,
        }
    return records
