"""Probe overhead on the measured step time: the same run with and without a ProbeSet, alternated.

    python -m pytest benchmarks/test_probe_overhead.py -s -q     # -s shows the table
    python benchmarks/test_probe_overhead.py

Each round runs zo2bench.engine.trainer.run twice, once bare and once with the ProbeSet a sweep cell
starts (interval 20 ms, the engine's pinned-bytes callback, a phase at each trainer phase), in ABBA
order so that a drift of the machine falls on both sides; one untimed run before the rounds pays for
imports, CUDA context and allocator warm-up. Printed: per round the median measured step time with
and without probes, their ratio, and the rates the probes achieved (fast group, slow group, and the
fast group within the measured phase); then the ratio over all steps and the median of the per-round
ratios.

With a GPU: opt-1.3b, zo2, fp16, batch 1, seq 2048, and the benchmark asserts ratio <= 1.01 and a
fast-group rate of at least 50 Hz in the measured phase. On CPU: opt-tiny, zo2, fp32, seq 128, and it
asserts nothing (a shared, noisy machine): it prints. Settings can be overridden from the environment:
ZO2BENCH_OVERHEAD_MODEL, _MODE, _DTYPE, _SEQ, _BATCH, _STEPS, _WARMUP, _ROUNDS, _DEVICE; and
ZO2BENCH_OVERHEAD_ASSERT=0 turns the GPU assertions off.

Not collected by the default test run (testpaths = ["tests"]); it is a benchmark, not a unit test.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere

import torch  # noqa: E402

from zo2bench.config import RunConfig  # noqa: E402

INTERVAL_S = 0.02
MAX_RATIO = 1.01        # probes may cost at most 1% of the measured step time ...
MIN_RATE_HZ = 50 * 0.99  # ... while sampling the fast group at 50 Hz (1% slack for the rate's own rounding)


def _env(name: str, default):
    value = os.environ.get(f"ZO2BENCH_OVERHEAD_{name}")
    return default if value is None else type(default)(value)


def settings() -> tuple[RunConfig, int]:
    device = _env("DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        base = dict(model="opt-1.3b", mode="zo2", dtype="fp16", seq=2048, batch=1, steps=10, warmup=2)
    else:
        base = dict(model="opt-tiny", mode="zo2", dtype="fp32", seq=128, batch=1, steps=40, warmup=3)
    cfg = RunConfig(device=device, **{k: _env(k.upper(), v) for k, v in base.items()})
    return cfg, _env("ROUNDS", 5)


def one_run(cfg: RunConfig, with_probes: bool) -> dict:
    from zo2bench.engine import offload
    from zo2bench.engine.trainer import run
    from zo2bench.probes import ProbeSet

    probes = None
    if with_probes:  # exactly what experiments/cell.py starts
        probes = ProbeSet(device=cfg.device, interval_s=INTERVAL_S, pinned_bytes=offload.pinned_bytes).start()
    try:
        record = run(cfg, on_phase=probes.phase if probes else None)
    finally:
        summary = probes.stop() if probes else None
    seconds = [s["seconds"] for s in record["steps"] if not s.get("warmup")]
    out = {"seconds": seconds, "median_s": statistics.median(seconds)}
    if summary is not None:
        m = summary["phases"].get("measured") or summary["overall"]
        span = m["end_s"] - m["start_s"]
        out.update(rate_hz=summary["sample_rate_hz"], slow_rate_hz=summary["slow_sample_rate_hz"],
                   measured_rate_hz=(m["n_samples"] - 1) / span if span > 0 and m["n_samples"] > 1 else None,
                   max_gap_s=summary["max_gap_s"], skipped_ticks=summary["skipped_ticks"],
                   nvml_queries=summary["nvml_queries"])
    return out


def measure(cfg: RunConfig, rounds: int, log=print) -> list[dict]:
    one_run(cfg.replace(steps=1, warmup=1), with_probes=True)  # untimed: imports, CUDA context, first allocations
    results = []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)  # ABBA
        runs = {}
        for with_probes in order:
            t = time.perf_counter()
            runs[with_probes] = one_run(cfg, with_probes)
            log(f"  round {r + 1}/{rounds} {'with' if with_probes else 'without'} probes: "
                f"median step {runs[with_probes]['median_s']:.5f} s ({time.perf_counter() - t:.1f} s wall)")
        results.append({"order": "off,on" if order[0] is False else "on,off", "off": runs[False], "on": runs[True]})
    return results


def _f(x, fmt):
    return "-" if x is None else format(x, fmt)


def report(cfg: RunConfig, results: list[dict], log=print) -> dict:
    on_all = [s for r in results for s in r["on"]["seconds"]]
    off_all = [s for r in results for s in r["off"]["seconds"]]
    ratios = [r["on"]["median_s"] / r["off"]["median_s"] for r in results]
    overall = {
        "median_off_s": statistics.median(off_all),
        "median_on_s": statistics.median(on_all),
        "ratio": statistics.median(on_all) / statistics.median(off_all),
        "median_round_ratio": statistics.median(ratios),
        "min_rate_hz": min(r["on"]["rate_hz"] or 0 for r in results),
        "min_measured_rate_hz": min(r["on"]["measured_rate_hz"] or 0 for r in results),
        "min_slow_rate_hz": min(r["on"]["slow_rate_hz"] or 0 for r in results),
    }
    log("")
    log(f"probe overhead: {cfg.model} {cfg.mode} {cfg.dtype} b{cfg.batch} s{cfg.seq} on {cfg.device}, "
        f"{len(results)} rounds x {cfg.steps} measured steps (+{cfg.warmup} warm-up), probes every "
        f"{INTERVAL_S * 1000:.0f} ms")
    head = (f"{'round':>5}  {'order':7} {'no probes s':>12} {'probes s':>12} {'ratio':>7}  {'fast Hz':>7} "
            f"{'measured Hz':>11} {'slow Hz':>7} {'max gap s':>9} {'skipped':>7}")
    log(head)
    log("-" * len(head))
    for i, (r, ratio) in enumerate(zip(results, ratios), 1):
        on = r["on"]
        log(f"{i:>5}  {r['order']:7} {r['off']['median_s']:>12.5f} {on['median_s']:>12.5f} {ratio:>7.4f}  "
            f"{_f(on['rate_hz'], '7.1f')} {_f(on['measured_rate_hz'], '11.1f')} {_f(on['slow_rate_hz'], '7.1f')} "
            f"{_f(on['max_gap_s'], '9.4f')} {on['skipped_ticks']:>7}")
    log("-" * len(head))
    log(f"{'all':>5}  {'':7} {overall['median_off_s']:>12.5f} {overall['median_on_s']:>12.5f} "
        f"{overall['ratio']:>7.4f}  (median of the per-round ratios: {overall['median_round_ratio']:.4f})")
    log(f"overhead: {100 * (overall['ratio'] - 1):+.2f}% of the median step (limit {100 * (MAX_RATIO - 1):.0f}%); "
        f"lowest fast-group rate {overall['min_rate_hz']:.1f} Hz, in the measured phase "
        f"{overall['min_measured_rate_hz']:.1f} Hz, slow group {overall['min_slow_rate_hz']:.1f} Hz")
    queries = results[-1]["on"].get("nvml_queries")
    if queries:
        log("NVML fast queries (mode, median us at open): "
            + ", ".join(f"{k}: {v['mode']} {v['open_us']}" for k, v in queries.items()))
    return overall


def test_probe_overhead():
    cfg, rounds = settings()
    overall = report(cfg, measure(cfg, rounds))
    if cfg.device.startswith("cuda") and _env("ASSERT", "1") != "0":
        assert overall["min_measured_rate_hz"] >= MIN_RATE_HZ, overall
        assert overall["ratio"] <= MAX_RATIO, overall


if __name__ == "__main__":
    cfg, rounds = settings()
    report(cfg, measure(cfg, rounds))
