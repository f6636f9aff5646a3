"""What does one z pass cost, and what bounds it? A microbenchmark of the perturbation kernel (device tool).

    PYTHONPATH=. python3 tools/bench_noise.py --numel 50331648 --out /tmp/noise.json

One OPT-1.3B block (50.3 M fp16 weights) by default. Each variant writes out <- theta + a * z over the
whole block; times are CUDA-event medians of --reps calls, taken round-robin over the variants in --rounds
rounds after one compiling call each.
  engine          the engine's own pass (noise.TritonNoise.perturb): the figure every step pays
  engine-update   the same kernel in place with the coefficient read from the device (noise.update)
  copy            out <- theta + a (no z): the memory floor of a pass (2 bytes read, 2 written a weight)
  gen-only        the engine's z alone, written as fp16, nothing read: what drawing the normals costs
  fast-warps-W    the engine's arithmetic (approximate lg2/sin/cos) with W warps a program: the same z
  randn4x[-W]     Triton's tl.randn4x (accurate functions; the engine's z up to commit 9e17a7b, 4 warps)
  rounds-7        tl.randn4x with 7 Philox rounds, not 10: another z
Besides the times, each variant's z is compared with the engine's (bitwise or max |difference|, through the
fp16 rounding of theta + a z), and its moments over the block (mean, std, kurtosis) are printed.
"""
import argparse
import json
import statistics

import torch
import triton
import triton.language as tl

from zo2bench.engine.noise import TritonNoise, triton_cdiv
from zo2bench.probes.fingerprint import fingerprint


@triton.jit
def _approx(x, op: tl.constexpr):
    return tl.inline_asm_elementwise(op + ".approx.ftz.f32 $0, $1;", "=r,r", [x], dtype=tl.float32,
                                     is_pure=True, pack=1)


@triton.jit
def _normals(seed, counters, ROUNDS: tl.constexpr, FAST: tl.constexpr):
    if FAST:
        u0, u1, u2, u3 = tl.rand4x(seed, counters, ROUNDS)
        u0 = tl.maximum(1.0e-7, u0)
        u2 = tl.maximum(1.0e-7, u2)
        r0 = tl.sqrt(-1.3862943611198906 * _approx(u0, "lg2"))  # -2 ln u = -2 ln2 log2 u
        r2 = tl.sqrt(-1.3862943611198906 * _approx(u2, "lg2"))
        t1 = 6.283185307179586 * u1
        t3 = 6.283185307179586 * u3
        return r0 * _approx(t1, "cos"), r0 * _approx(t1, "sin"), r2 * _approx(t3, "cos"), r2 * _approx(t3, "sin")
    else:
        return tl.randn4x(seed, counters, ROUNDS)


@triton.jit
def _axpy(dst_ptr, src_ptr, offs, n, a, z, LOAD: tl.constexpr):
    m = offs < n
    if LOAD:
        x = tl.load(src_ptr + offs, mask=m).to(tl.float32)
        tl.store(dst_ptr + offs, (x + a * z).to(dst_ptr.dtype.element_ty), mask=m)
    else:
        tl.store(dst_ptr + offs, z.to(dst_ptr.dtype.element_ty), mask=m)


@triton.jit
def variant_kernel(dst_ptr, src_ptr, n, seed, a, Q: tl.constexpr, LOAD: tl.constexpr, RANDOM: tl.constexpr,
                   ROUNDS: tl.constexpr, FAST: tl.constexpr):
    # The engine's element layout (noise.py): element pid*4Q + k*Q + j takes the k-th normal at counter pid*Q + j.
    pid = tl.program_id(0)
    base = pid.to(tl.int64) * 4 * Q + tl.arange(0, Q)
    if RANDOM:
        z0, z1, z2, z3 = _normals(seed, pid * Q + tl.arange(0, Q), ROUNDS, FAST)
    else:
        z0 = tl.full([Q], 1.0, tl.float32)
        z1, z2, z3 = z0, z0, z0
    _axpy(dst_ptr, src_ptr, base, n, a, z0, LOAD)
    _axpy(dst_ptr, src_ptr, base + Q, n, a, z1, LOAD)
    _axpy(dst_ptr, src_ptr, base + 2 * Q, n, a, z2, LOAD)
    _axpy(dst_ptr, src_ptr, base + 3 * Q, n, a, z3, LOAD)


def timed(fn, out, reps: int) -> list[float]:
    ms = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(out)
        end.record()
        end.synchronize()
        ms.append(start.elapsed_time(end))
    return ms


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--numel", type=int, default=50_331_648, help="elements of one unit (OPT-1.3B block)")
    p.add_argument("--reps", type=int, default=40, help="timed calls of each variant, over all rounds")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--model-numel", type=float, default=1.42e9, help="weights of the model a step walks")
    p.add_argument("--passes", type=int, default=3, help="z passes a unit takes a step (update, +, -)")
    p.add_argument("--out")
    a = p.parse_args()
    dev = torch.device("cuda")
    n, seed, eps = a.numel, 12345, 1e-3
    theta = (torch.randn(n, device=dev) * 0.02).half()
    ref = torch.empty_like(theta)
    engine = TritonNoise(dev, torch.float16, n)
    engine.perturb(ref, theta, seed, eps)
    coef = torch.zeros((), dtype=torch.float32, device=dev)

    def run_variant(out, q=1024, warps=4, load=True, random=True, rounds=10, fast=False):
        grid = (triton_cdiv(n, 4 * q),)
        variant_kernel[grid](out, theta, n, seed & 0x7FFFFFFF, eps, Q=q, LOAD=load, RANDOM=random, ROUNDS=rounds,
                             FAST=fast, num_warps=warps)

    variants = {
        "engine": (lambda out: engine.perturb(out, theta, seed, eps), True),
        "engine-update": (lambda out: engine.update(out, seed, coef), True),
        "copy": (lambda out: run_variant(out, random=False), True),
        "gen-only": (lambda out: run_variant(out, load=False, fast=True), False),
        "fast-warps-4": (lambda out: run_variant(out, fast=True), True),
        "fast-warps-8": (lambda out: run_variant(out, fast=True, warps=8), True),
        "randn4x-4": (lambda out: run_variant(out), True),
        "randn4x-8": (lambda out: run_variant(out, warps=8), True),
        "rounds-7": (lambda out: run_variant(out, rounds=7, warps=8), True),
    }
    rows = []
    print(f"numel {n:,} fp16, {a.reps} reps; per-step figure: {a.passes} passes over {a.model_numel:.3g} weights")
    print(f"{'variant':18s} {'median us':>10s} {'IQR us':>8s} {'GB/s (r+w)':>11s} {'ms/step':>8s}  z vs engine")
    # Round-robin: every variant is timed in each of --rounds rounds (reps/rounds calls each), so clocks that
    # ramp up or drift over the run are spread over all variants instead of landing on the first one.
    outs = {name: torch.empty_like(theta) for name in variants}
    outs["engine-update"].copy_(theta)
    for name, (fn, _) in variants.items():
        fn(outs[name])  # compile
    times = {name: [] for name in variants}
    per_round = max(1, a.reps // a.rounds)
    for _ in range(a.rounds):
        for name, (fn, _) in variants.items():
            times[name] += timed(fn, outs[name], per_round)
    for name, (fn, loads) in variants.items():
        out, ms = outs[name], times[name]
        med = statistics.median(ms)
        q = statistics.quantiles(ms, n=4)
        bytes_moved = n * (4 if loads else 2)
        row = {"variant": name, "median_us": med * 1e3, "iqr_us": (q[2] - q[0]) * 1e3,
               "gb_per_s": bytes_moved / (med / 1e3) / 1e9,
               "ms_per_step": med * a.model_numel / n * a.passes}
        if name not in ("copy", "engine-update"):
            fn(out)
            z = (out.float() - theta.float()) / eps if loads else out.float()
            zref = (ref.float() - theta.float()) / eps
            row["bitwise_engine"] = bool(torch.equal(out, ref)) if loads else None
            row["max_abs_diff_z"] = float((z - zref).abs().max()) if loads else None
            zf = z.double()
            m, s = float(zf.mean()), float(zf.std())
            row.update(z_mean=m, z_std=s, z_kurtosis=float((((zf - m) / s) ** 4).mean()))
        rows.append(row)
        cmp = ("bitwise" if row.get("bitwise_engine") else f"max|dz| {row['max_abs_diff_z']:.3g}") \
            if row.get("max_abs_diff_z") is not None else "-"
        mom = (f"  mean {row['z_mean']:+.4f} std {row['z_std']:.4f} kurt {row['z_kurtosis']:.3f}"
               if "z_std" in row else "")
        print(f"{name:18s} {row['median_us']:10.1f} {row['iqr_us']:8.1f} {row['gb_per_s']:11.0f} "
              f"{row['ms_per_step']:8.2f}  {cmp}{mom}", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"schema": "bench-noise/1", "numel": n, "dtype": "fp16", "reps": a.reps, "rounds": a.rounds,
                       "model_numel": a.model_numel, "passes": a.passes, "rows": rows,
                       "fingerprint": fingerprint("cuda")}, f, indent=1)


if __name__ == "__main__":
    main()
