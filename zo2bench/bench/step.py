"""`zo2bench bench-step`: one configuration's step time against the floors of the machine it runs on.

    zo2bench bench-step --model opt-1.3b-untied --mode zo2 --dtype fp16 --batch 1 --seq 2048 --out b.json

Warm-up steps, then measured steps (setup and warm-up outside the statistics), with upload, compute and
offload busy times from CUDA events. The floors come from the calibration of this machine: one given
with --calibration, else a stored one of the same machine and device under --results-dir (the output says
which file), else one measured in this run with sizes that fit the device and stored there for the next.
"""
from __future__ import annotations

import sys

from zo2bench import catalog
from zo2bench.bench.calibrate import load_calibration, stored_or_measured
from zo2bench.bench.floors import floors
from zo2bench.config import ZO_MODES, RunConfig
from zo2bench.results import SCHEMA_VERSION
from zo2bench.stats import summarize

MIB = 2**20


def get_calibration(path: str | None, results_dir: str, fingerprint: dict, device: str) -> tuple[dict, str]:
    if path:
        return load_calibration(path), f"given: {path}"
    return stored_or_measured(results_dir, fingerprint, device)


def bench_step(cfg: RunConfig, calibration_path: str | None = None, results_dir: str = "results") -> dict:
    from zo2bench.measure import measured_run as run

    def progress(i, total, row):
        print(f"\rbench-step: step {i + 1}/{total} {row['seconds'] * 1e3:8.1f} ms", end="", file=sys.stderr)

    record = run(cfg, on_step=progress, timing=True)
    print(file=sys.stderr)
    return bench_record(record, calibration_path, results_dir)


def bench_record(record: dict, calibration_path: str | None = None, results_dir: str = "results") -> dict:
    """bench-step's record from a measured run's (one process's, or the ranks' merged on rank 0)."""
    cfg = RunConfig.from_dict(record["config"])  # as it ran: "auto" device and dtype resolved
    cal, cal_source = get_calibration(calibration_path, results_dir, record["fingerprint"], cfg.device)
    measured = [s for s in record["steps"] if not s["warmup"]]
    step_s = summarize([s["seconds"] for s in measured])
    lanes = {}
    for name in ("upload", "compute", "replay", "offload"):
        values = [s["lanes_ms"].get(name, 0.0) for s in measured if "lanes_ms" in s]
        lanes[name] = summarize(values) if values else None
    spec = catalog.resolve(cfg.model)
    resident = record["offload"]["resident_blocks"]
    device = "cuda" if cfg.device.startswith("cuda") else "cpu"
    fl = floors(spec, cfg.batch, cfg.seq, cfg.mode, cfg.dtype, cal, resident_blocks=resident or 0,
                device=device, writeback_every=cfg.writeback_every)
    streamed = spec.layers - (resident or 0) if cfg.mode == "zo2" else 0
    out = {
        "schema_version": SCHEMA_VERSION, "kind": "bench-step",
        "config": record["config"], "model": record["model"], "fingerprint": record["fingerprint"],
        "calibration": {"source": cal_source, "figures": cal.get("figures"), "fingerprint": cal.get("fingerprint")},
        "step_s": step_s,
        "tokens_per_s": cfg.batch * cfg.seq / step_s["median"],
        "floors": fl,
        "ratio_to_floor": step_s["median"] / fl["floor_s"] if fl.get("floor_s") else None,
        "ratio_to_deferred_floor": step_s["median"] / fl["floor_deferred_s"] if fl.get("floor_deferred_s") else None,
        "writeback": writeback(cfg, spec, cal, lanes, streamed) if device == "cuda" and streamed else None,
        "lanes_ms": lanes,
        "memory": record["memory"]["measured"],
        "resident_blocks": resident, "streamed_blocks": streamed,
        "build_s": record["build"]["seconds"],
        "steps": record["steps"],
        "step_timing": record.get("step_timing"),
        "cuda_graphs": record.get("cuda_graphs"),
        "final_params_sha256": record["final_params_sha256"],
    }
    d = record.get("distributed")
    if d:  # the slowest rank's step times (merge() made "seconds" so), every rank's GPU and peaks
        from zo2bench.bench.scaling_floors import dist_floors, multi_gpu_rates

        df = dist_floors(spec, cfg.dtype, cfg.mode, d, compute_1gpu_s=fl.get("compute_s"),
                         device=device)
        out.update(distributed=d, rates=multi_gpu_rates(), distributed_floors=df,
                   ratio_to_floor=step_s["median"] / df["floor_s"] if df.get("floor_s") else None)
    return out


def writeback(cfg: RunConfig, spec, cal: dict, lanes: dict, streamed: int) -> dict:
    """The write-back interval this run used, the replay cost measured now, and the K that
    bench.writeback.choose_writeback_every suggests from them, this run's compute busy time and the link."""
    import torch

    from zo2bench.bench.floors import BOTH_DIRECTIONS_KEY, H2D_KEY, figure
    from zo2bench.bench.writeback import choose_writeback_every, replay_cost_s
    from zo2bench.config import DTYPE_BYTES
    from zo2bench.devices import torch_dtype

    replay_s = replay_cost_s(spec.block_params(), torch_dtype(cfg.dtype), torch.device(cfg.device))
    compute_ms = (lanes.get("compute") or {}).get("median")
    out = {"every": cfg.writeback_every, "replay_s_per_block": replay_s, "compute_busy_s": None, "suggested": None}
    if compute_ms is not None:
        out["compute_busy_s"] = compute_ms / 1e3
        out["suggested"] = choose_writeback_every(streamed, spec.block_params() * DTYPE_BYTES[cfg.dtype],
                                                  figure(cal, H2D_KEY), figure(cal, BOTH_DIRECTIONS_KEY),
                                                  replay_s, compute_ms / 1e3)
    return out


def table(b: dict) -> str:
    c, s, fl, mem = b["config"], b["step_s"], b["floors"], b["memory"]
    ms = lambda x: "n/a" if x is None else f"{x * 1e3:.1f} ms"  # noqa: E731
    mib = lambda x: "not measured" if x is None else f"{x / MIB:,.0f} MiB"  # noqa: E731
    rows = [
        ("configuration", f"{b['model']['name']} ({b['model']['n_params'] / 1e9:.3f} B params) {c['mode']} "
                          f"{c['dtype']} batch {c['batch']} seq {c['seq']} on {c['device']}"),
        ("step time", f"median {ms(s['median'])}, IQR {ms(s['iqr'])}, min {ms(s['min'])}, max {ms(s['max'])} "
                      f"({s['n']} measured steps, {c['warmup']} warm-up)"),
        ("tokens/s", f"{b['tokens_per_s']:,.0f}"),
        ("transfer floor", f"{ms(fl.get('transfer_s'))} ({fl.get('bytes', {}).get('total_bytes', 0) / 1e9:.2f} GB "
                           f"moved per step)" if fl.get("transfer_s") is not None else "n/a"),
        ("compute floor", f"{ms(fl.get('compute_s'))} ({fl.get('flops', {}).get('total_flops', 0) / 1e12:.2f} TFLOP)"),
        ("step / floor", "n/a" if b["ratio_to_floor"] is None
         else f"{b['ratio_to_floor']:.2f}x the {(b.get('distributed_floors') or fl).get('binds')} floor"
         + (" (distributed floor)" if b.get("distributed") else "")),
    ]
    if c["mode"] == "zo2" and fl["inputs"]["device"] == "cuda" and b.get("ratio_to_deferred_floor") is not None:
        k = fl["writeback_every"]
        rows.append((f"floor, write-back 1/{k}", f"{ms(fl['floor_deferred_s'])} (transfer: every upload and a {k}-th "
                     f"of the offload, {ms(fl['transfer_deferred_s'])}); step / it "
                     f"{b['ratio_to_deferred_floor']:.2f}x"))
    wb = b.get("writeback")
    if wb and wb.get("suggested"):
        rows.append(("write-back K", f"{wb['every']} used; replay {wb['replay_s_per_block'] * 1e3:.2f} ms a block; "
                     f"suggested K = {wb['suggested']['every']} (est. "
                     f"{ms(wb['suggested']['estimates_s'][wb['suggested']['every']])} a step)"))
    g = b.get("cuda_graphs")
    if g and g.get("capture_error"):
        rows.append(("CUDA graphs", f"not captured ({g['capture_error']}): all {g['eager_steps']} steps ran eagerly"))
    elif g:
        rows.append(("CUDA graphs", f"{g['replays']} steps replayed, {g['eager_steps']} eager; {g['captures']} "
                                    f"capture(s), {g['capture_s']:.2f} s (inside the step captured); no lane times"))
    for name, lane in b["lanes_ms"].items():
        if lane is not None:
            rows.append((f"{name} busy", f"median {lane['median']:.1f} ms per step (CUDA events)"))
    rows += [
        ("peak allocated", mib(mem.get("torch_peak_allocated_bytes"))
         + (" (replays allocate nothing: the graph's memory is its pool's, in peak reserved)" if g else "")),
        ("peak reserved", mib(mem.get("torch_peak_reserved_bytes"))),
        ("blocks", f"{b['resident_blocks']} resident, {b['streamed_blocks']} streamed"
         if c["mode"] in ZO_MODES else "n/a"),
        ("calibration", b["calibration"]["source"]),
    ]
    sb = b.get("shared_build")
    if sb:
        rows.append(("build", f"{sb['build_s']:.1f} s, one build shared by {len(sb['configurations'])} "
                              f"configurations (this is number {sb['index'] + 1}); weights "
                              + ("freshly built" if sb["index"] == 0 else "continued from the one before")))
    d = b.get("distributed")
    if d:
        df = b["distributed_floors"]
        rows.insert(1, ("distributed", f"{d['world_size']} ranks, {d['strategy']} ({d['backend']}); step time: "
                                       "the slowest rank's; peaks: the largest rank's"))
        rows += [(f"rank {r['rank']}", f"{r['device']} {r.get('gpu') or ''} peak allocated "
                                       f"{mib((r['memory'].get('measured') or {}).get('torch_peak_allocated_bytes'))}")
                 for r in d["ranks"]]
        rows += [("distributed floor", "n/a" if df["floor_s"] is None else
                  f"{ms(df['floor_s'])} ({df['binds']}): PCIe {ms(df['pcie_s'])} ({df['how']}), NVLink gather "
                  f"{ms(df['gather_s'])}, compute {ms(df['compute_s'])}"),
                 ("rates", f"host to device {df['h2d_total_gb_per_s'] or 'n/a'} GB/s total for "
                           f"{d.get('ranks_per_host', d['world_size'])} GPUs, NVLink {df['nvlink_gb_per_s']} GB/s "
                           f"({df['source']})")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
