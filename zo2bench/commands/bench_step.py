"""`zo2bench bench-step`: step time, floors and where the time goes, for one configuration.

    zo2bench bench-step --model opt-1.3b-untied --mode zo2 --dtype fp16 --batch 1 --seq 2048 --out b.json
    zo2bench bench-step --model opt-tiny --device cpu --seq 64      # seconds on a CPU, calibration included
    zo2bench bench-step --model opt-13b --dtype fp16 --batch 8 --seq 2048 --nproc-per-node 4   # 4 GPUs, one record
    zo2bench bench-step --model opt-175b --mode zo2 --dtype fp16 --seq 2048 --batches 1,8 --out b.json
        # one build, two configurations: b.batch1-seq2048.json, b.batch8-seq2048.json (bench/multi.py)

The floors come from --calibration, else from this machine's stored calibration for the device, else
from one measured now (sizes that fit the device) and stored under --results-dir for the next call.
Every path, and the host memory the run will pin, is checked before anything runs. With --nproc-per-node N
the ranks start through torch.distributed.run as for `zo2bench run` (docs/distributed.md); rank 0 writes one
record: the slowest rank's step times, every rank's GPU and peaks, and the floors of that configuration
from the measured multi-GPU rates (bench/scaling_floors.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

from zo2bench.commands.run import (
    _Null,
    add_distributed_options,
    add_run_options,
    config_from_args,
    prepare_launch,
    refuse_infeasible,
)
from zo2bench.config import RunConfig
from zo2bench.errors import GPUOutOfMemory, NonFiniteLoss, UserError
from zo2bench.paths import deliver, readable_file, usable_dir, writable_file


def register(sub) -> None:
    p = sub.add_parser("bench-step", help="time steps against the machine's transfer and compute floors",
                       description=__doc__.split("\n\n")[0])
    add_run_options(p, RunConfig(model="opt-1.3b-untied", warmup=3, steps=10))
    add_distributed_options(p, RunConfig())
    p.add_argument("--calibration", metavar="FILE.json",
                   help="a calibration record to use (default: this machine's stored one, measured and stored "
                        "if there is none)")
    p.add_argument("--results-dir", default="results",
                   help="where stored calibrations are looked for, and a new one is stored")
    p.add_argument("--batches", metavar="B1,B2,...",
                   help="measure each of these batch sizes on one built model, in turn (replaces --batch); "
                        "the weights carry on from one configuration to the next "
                        "(bench/multi.py; default: --batch alone)")
    p.add_argument("--seqs", metavar="T1,T2,...",
                   help="the same for sequence lengths (replaces --seq; default: --seq alone)")
    p.add_argument("--out", metavar="FILE.json", help="write the JSON record here; '-' prints it on stdout "
                                                      "(default: only the table); with several configurations, "
                                                      "one file each: FILE.batchB-seqT.json")
    p.set_defaults(func=main)


def main(args) -> int:
    from zo2bench.bench.calibrate import load_calibration

    if readable_file(args.calibration, "--calibration"):
        load_calibration(args.calibration)  # not a calibration record: say so now, not after the steps
    else:
        usable_dir(args.results_dir, "--results-dir")
    from zo2bench.bench.multi import configurations, out_paths, parse_sizes
    from zo2bench.distributed.parallel import World

    cfg = config_from_args(args)
    cfgs = configurations(cfg, parse_sizes(args.batches, "--batches"), parse_sizes(args.seqs, "--seqs"))
    paths = out_paths(args.out, cfgs)
    for p in paths:
        writable_file(p, "--out")
    if World.launched():
        return _main_rank(cfgs, paths, args)
    if cfg.nproc_per_node > 1:
        from zo2bench.distributed.launch import relaunch

        for c in cfgs:  # every configuration refused now, not after the build
            prepare_launch(c, args.out, kind="bench-step")
        extra = ["--results-dir", str(Path(args.results_dir).resolve())]
        if args.calibration:
            extra += ["--calibration", str(Path(args.calibration).resolve())]
        extra += [*(["--batches", args.batches] if args.batches else []), *(["--seqs", args.seqs] if args.seqs else [])]
        return relaunch(cfg, args.out, command="bench-step", extra=tuple(extra))
    print("bench-step: importing torch and transformers (a few seconds, about 10 s on some machines)",
          file=sys.stderr, flush=True)
    from zo2bench.bench.step import bench_step, table
    from zo2bench.devices import device_name, resolve_device

    if len(cfgs) > 1:
        return _several(cfgs, paths, args)
    refuse_infeasible(cfg.replace(device=device_name(resolve_device(cfg.device))), args.out, kind="bench-step")
    try:
        b = bench_step(cfg, args.calibration, args.results_dir)
    except (GPUOutOfMemory, NonFiniteLoss) as e:
        raise UserError(str(e)) from None
    return deliver(b, args.out, table(b))


def _several(cfgs: list[RunConfig], paths: list, args) -> int:
    """One process, several configurations on one build (bench/multi.py)."""
    from zo2bench.bench.multi import bench_steps
    from zo2bench.devices import device_name, resolve_device
    from zo2bench.engine.trainer import validate

    for c in cfgs:  # a seq too long for the model, or host memory short, is refused before the build
        validate(c)
        refuse_infeasible(c.replace(device=device_name(resolve_device(c.device))), paths[0], kind="bench-step")
    try:
        records, error = bench_steps(cfgs, args.calibration, args.results_dir, paths)
    except (GPUOutOfMemory, NonFiniteLoss) as e:
        raise UserError(str(e)) from None
    status = _deliver_all(records, paths[:len(records)])
    if error is not None:
        raise error
    return status


def _deliver_all(records: list[dict], paths: list) -> int:
    """Each record to its file with its table; to stdout ("-") as one JSON list, the tables on stderr."""
    from zo2bench.bench.step import table

    if paths and paths[0] == "-":
        import json

        print("\n\n".join(table(b) for b in records), file=sys.stderr, flush=True)
        print(json.dumps(records, indent=1, default=str), flush=True)
        return 0
    return max(deliver(b, p, table(b) + "\n") for b, p in zip(records, paths))


def _main_rank(cfgs: list[RunConfig], paths: list, args) -> int:
    """One rank of a distributed bench-step: every rank measures its part, rank 0 writes the merged record
    (one per configuration, all on one build, with --batches/--seqs)."""
    from zo2bench.bench.multi import measure_all, share
    from zo2bench.bench.step import bench_record, table
    from zo2bench.distributed.measure import measure_rank, rank_session, resolve
    from zo2bench.distributed.parallel import World
    from zo2bench.experiments.launch import die_with_parent

    die_with_parent()  # started by relaunch(): ends with the process that started it
    world = World.from_env()
    lead = world.rank == 0
    stream = sys.stderr if lead else _Null()

    def progress(i, total, row):
        print(f"bench-step[rank 0 of {world.size}]: step {i + 1}/{total} {row['seconds'] * 1e3:8.1f} ms",
              file=stream, flush=True)

    for c in cfgs[1:]:
        resolve(c, world)  # a batch that does not divide, before the build
    try:
        with rank_session(cfgs[0], world) as session:
            raw, _ = measure_all(cfgs, lambda c, once: measure_rank(c, world, session, on_step=progress,
                                                                    timing=True, builder=once),
                                 keep_partial=False)  # a rank that stops leaves the others in a collective
    except (GPUOutOfMemory, NonFiniteLoss) as e:
        raise UserError(str(e)) from None
    if not lead:
        return 0
    records = [bench_record(r, args.calibration, args.results_dir) for r in raw]
    if len(cfgs) == 1:
        return deliver(records[0], args.out, table(records[0]))
    return _deliver_all(share(records, raw, paths), paths)
