"""The tables of the results as a whole (machines, calibrations, bench-step records), and TABLES: every table
`zo2bench report tables` can place in README.md and docs/*.md.

    t = tables.machines(results)
    TABLES["memory"][1](results, "h100-80gb-hbm3")   # fit_tables.memory_measured of that machine

TABLES maps a name to (what it shows, function(results, machine) -> Table); a marker in a Markdown file
names one as `<!-- zo2bench:table NAME -->` or `<!-- zo2bench:table NAME:MACHINE -->` (MACHINE: a machine id,
or a prefix of exactly one; without it the results must hold a single machine). See report.markers.

Units: memory in GiB (2^30 bytes), times in ms or s as the header says, bandwidth in GB/s (10^9 B/s),
energy in mJ per token. Intervals are 95%; "[lo, hi]" after a fitted value.
"""
from __future__ import annotations

from zo2bench.bench import floors as fl
from zo2bench.report import fit_tables as ft
from zo2bench.report.fmt import gib, row_cell
from zo2bench.report.table import Cell, Table, row

# -- the results as a whole ------------------------------------------------------------------------------------

def machines(results) -> Table:
    body = []
    for m in results.machines():
        rows = results.rows(machine=m)
        fp = next((r.data.get("fingerprint") for r in rows + results.kind("calibration", m)
                   if r.data.get("fingerprint")), {}) or {}
        srcs = [r.source for r in rows]
        clean = sum(s.trusted for s in srcs)
        gpus = len({(r.data.get("fingerprint") or {}).get("gpu_uuid") for r in rows} - {None})
        body.append(row(m, fp.get("gpu") or "–", fp.get("gpu_driver_version") or "–", fp.get("torch") or "–",
                        f"gen {fp.get('pcie_gen_current')} x{fp.get('pcie_width_current')}"
                        if fp.get("pcie_gen_current") else "–",
                        gib(fp.get("host_memory_bytes")), ", ".join(results.series(m)) or "–",
                        f"{sum(r.data.get('status') == 'ok' for r in rows)} / {len(rows)}", gpus or "–",
                        f"{clean} clean, {len(srcs) - clean} dirty or unknown"))
    return Table("Machines", ("machine", "GPU", "driver", "torch", "PCIe", "host GiB", "series", "ok / cells",
                              "GPUs seen", "rows' code"), tuple(body),
                 ("Each machine's rows are analysed on their own: no fit or table mixes machines. "
                  "GPUs seen: distinct GPU UUIDs among the rows (cells may run on different cards of one kind).",),
                 (False, False, False, False, False, True, False, True, True, False))


CAL_FIGURES = (("h2d_pinned_gb_per_s", "host→device, pinned", "GB/s"),
               ("d2h_pinned_gb_per_s", "device→host, pinned", "GB/s"),
               ("both_directions_pinned_gb_per_s", "both directions at once, pinned (total)", "GB/s"),
               ("h2d_pageable_gb_per_s", "host→device, pageable", "GB/s"),
               ("device_mem_rw_gb_per_s", "device memory read+write", "GB/s"),
               ("matmul_fp16_tflop_per_s", "fp16 matmul 8192³", "TFLOP/s"),
               ("matmul_bf16_tflop_per_s", "bf16 matmul 8192³", "TFLOP/s"),
               ("matmul_fp32_tflop_per_s", "fp32 matmul (tf32 off)", "TFLOP/s"),
               ("host_mem_rw_gb_per_s", "host memory read+write", "GB/s"))


def calibration(results, machine: str) -> Table:
    cal = results.calibration(machine)
    body = []
    if cal:
        for key, label, unit in CAL_FIGURES:
            v = fl.figure(cal.data, key)
            if v is not None:
                body.append(row(label, Cell(f"{v:,.1f}", source=cal.source), unit))
    return Table(f"Calibrated floors of {machine}" + (f" ({cal.source.file})" if cal else ": none recorded"),
                 ("figure", "median", "unit"), tuple(body), ("GB = 10^9 bytes; TFLOP = 10^12 FLOP.",),
                 (False, True, False))


def bench_steps(results, machine: str) -> Table:
    body = []
    for r in sorted(results.kind("bench-step", machine), key=lambda r: r.source.file):
        c, st, f = r.data.get("config") or {}, r.data.get("step_s") or {}, r.data.get("floors") or {}
        mem = (r.data.get("memory") or {}).get("torch_peak_allocated_bytes")
        body.append(row(c.get("model"), c.get("mode"), c.get("batch"), c.get("seq"),
                        Cell(f"{st['median'] * 1e3:.1f}", source=r.source) if st.get("median") else "–",
                        f"{f['floor_s'] * 1e3:.1f} {f.get('binds')}" if f.get("floor_s") else "–",
                        f"{r.data['ratio_to_floor']:.2f}" if isinstance(r.data.get("ratio_to_floor"), float) else "–",
                        Cell(f"{mem / 2**20:,.0f}", source=r.source) if mem else "–", row_cell(r)))
    return Table(f"bench-step records of {machine}", ("model", "mode", "batch", "seq", "step ms", "floor ms (binds)",
                 "step / floor", "peak allocated MiB", "record"), tuple(body),
                 ("Each record's floors come from the calibration it names.",),
                 (False, False, True, True, True, True, True, True, False))


def _analysis(results, machine):
    from zo2bench.analysis.scaling import analyse

    key = (id(results), machine)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = analyse(results, machine)
    return _CACHE[key]


_CACHE: dict = {}


def _claims(results, machine):
    from zo2bench.report import claims_section, documents

    return claims_section.summary_table(documents.load(results.root, {machine: _analysis(results, machine)}),
                                        machine)

# name -> (what it shows, function(results, machine) -> Table); `zo2bench report tables` fills markers with them
TABLES = {
    "machines": ("the machines results exist for", lambda res, m: machines(res)),
    "calibration": ("a machine's calibrated floors", calibration),
    "bench-step": ("bench-step records against their floors", bench_steps),
    "memory": ("peak memory per model and mode, every view", lambda res, m: ft.memory_measured(_analysis(res, m))),
    "memory-models": ("memory models fitted, with intervals", lambda res, m: ft.memory_fits(_analysis(res, m))),
    "throughput": ("step time, tokens/s and floors of every cell",
                   lambda res, m: ft.throughput_measured(_analysis(res, m))),
    "time-models": ("step-time models compared", lambda res, m: ft.time_models(_analysis(res, m))),
    "crossover": ("where zo2 is as fast as mezo", lambda res, m: ft.crossovers(_analysis(res, m))),
    "projections": ("fits carried to 66B-1T, marked as projections", lambda res, m: ft.projections(_analysis(res, m))),
    "energy": ("GPU energy per token", lambda res, m: ft.energy(_analysis(res, m))),
    "claims": ("verdict counts per document section", lambda res, m: _claims(res, m)),
}
MACHINE_FREE = {"machines"}
