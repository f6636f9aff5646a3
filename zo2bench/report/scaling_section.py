"""The report's scaling section: speed-up and efficiency against GPU count, per machine, beside the floors.

    blocks(results)                    # render.Block list for the index page ("not measured" without rows)
    scaling_table(results, machine)    # report.table.Table of analysis.gpu_scaling.scaling_lines

Every number links to its row; the floors are computed, not measured, and the notes say from what.
"""
from __future__ import annotations

from zo2bench.analysis.gpu_scaling import scaling_lines
from zo2bench.bench.scaling_floors import H2D_TOTAL_GB_S, NVLINK_GB_S, REFERENCE
from zo2bench.report.table import Cell, Table, row

NOT_MEASURED = "not measured"


def _b(kind, text="", **kw):
    from zo2bench.report.render import Block

    return Block(kind, text, **kw)


def _x(v, fmt="{:.2f}") -> str:
    return NOT_MEASURED if v is None else fmt.format(v)


def scaling_table(results, machine: str) -> Table | None:
    lines = scaling_lines(results, machine)
    if not lines:
        return None
    body = []
    for x in lines:
        src = x["row"].source
        body.append(row(x["model"], x["mode"], x["batch"], x["seq"], x["gpus"], x["parallel"],
                        Cell(_x(x["step_s"], "{:.3f}"), source=src), Cell(_x(x["tokens_per_s"], "{:,.0f}"), source=src),
                        _x(x["speedup"], "{:.2f}x"), _x(x["efficiency"], "{:.0%}"),
                        _x(x["floor_s"], "{:.3f}") + (f" ({x['binds']})" if x["binds"] else ""),
                        _x(x["floor_speedup"], "{:.2f}x"), _x(x["step_over_floor"], "{:.2f}")))
    rates = ", ".join(f"{n} GPU{'s' if n > 1 else ''} {r} GB/s" for n, r in H2D_TOTAL_GB_S.items())
    notes = ("Speed-up: tokens/s over the single-GPU cell of the same model, mode, global batch and sequence on "
             "this machine; efficiency: speed-up / GPUs. Step: the median of the measured steps, each the "
             "slowest rank's.",
             f"Floors are computed per configuration, not measured: host-to-device {rates} in total (GB = 1e9 B), "
             f"NVLink {NVLINK_GB_S} GB/s, from {REFERENCE}; the compute floor is the calibrated one-GPU floor "
             "over the GPU count (not measured where there is no calibration). Floor speed-up: the single "
             "cell's floor over this one's, the most the floors allow.")
    return Table(f"Scaling across GPUs on {machine}", ("model", "mode", "batch", "seq", "GPUs", "strategy",
                 "step s", "tokens/s", "speed-up", "efficiency", "floor s (binds)", "floor speed-up",
                 "step / floor"), tuple(body), notes,
                 (False, False, True, True, True, False, True, True, True, True, True, True, True))


def blocks(results) -> list:
    out = [_b("heading", "Scaling across GPUs", level=2)]
    tables = [t for t in (scaling_table(results, m) for m in results.machines()) if t is not None]
    if not tables:
        return out + [_b("text", f"Speed-up and efficiency against GPU count: {NOT_MEASURED} (no ok cell of the "
                                 "gpu_scaling series under the results folder; `zo2bench sweep "
                                 "experiments/gpu_scaling.toml --profile gpu2` on a 2-GPU machine makes them).")]
    return out + [_b("table", table=t) for t in tables]
