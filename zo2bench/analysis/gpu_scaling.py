"""Speed-up and efficiency against GPU count, from the distributed cells of one machine, beside their floors.

    lines = scaling_lines(results, "h200-141gb")   # one per ok cell with a grid.parallel value, grouped
    lines[0]["speedup"], lines[0]["efficiency"], lines[0]["floor_s"], lines[0]["floor_speedup"]

A cell's baseline is the "single" cell (one process, one GPU) of the same model, mode, dtype, global batch
and sequence length on the same machine: speed-up = its tokens/s over the baseline's, efficiency =
speed-up / GPUs. Rows of different machines are never compared. The floors are bench/scaling_floors.py's
for the configuration (PCIe and NVLink rates of ../shared/reference/multi-gpu.md; the compute floor from the
machine's calibration where there is one), and "floor_speedup" is the single cell's floor over this one's:
the most the transfer and compute floors allow the strategy to gain.
"""
from __future__ import annotations

from zo2bench.analysis.models import spec_of
from zo2bench.bench import floors as fl
from zo2bench.bench.scaling_floors import dist_floors


def _dims(row) -> dict:
    d = row.get("distributed") or {}
    if d:
        return d
    return {"world_size": 1, "ranks_per_host": 1, "weight_shard": 1, "strategy": "single"}


def _floor(row, spec, cal) -> dict:
    c = row.get("config") or {}
    compute = None
    if cal is not None:
        compute = fl.floors(spec, c["batch"], c["seq"], c["mode"], c["dtype"], cal).get("compute_s")
    device = "cpu" if str(c.get("device", "")).startswith("cpu") else "cuda"
    return dist_floors(spec, c["dtype"], c["mode"], _dims(row), compute_1gpu_s=compute, device=device)


def scaling_lines(results, machine: str) -> list[dict]:
    """Every ok cell with a grid.parallel value on `machine`, with its speed-up against its single cell."""
    rows = [r for r in results.rows(machine=machine, status="ok") if (r.get("cell") or {}).get("parallel")]
    cal_row = results.calibration(machine)
    cal = cal_row.data if cal_row is not None else None
    groups: dict = {}
    for r in rows:
        c = r.get("cell") or {}
        groups.setdefault((c.get("model"), c.get("mode"), c.get("dtype"), c.get("batch"), c.get("seq")), []).append(r)
    out = []
    for (model, mode, dtype, batch, seq), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        try:
            spec = spec_of(model)
        except Exception:  # a model this version does not know: no floors, still the measurements
            spec = None
        lines = []
        for r in members:
            tps, step = r.get("tokens_per_s"), (r.get("step_time_s") or {}).get("median")
            floors = _floor(r, spec, cal) if spec is not None else {}
            dims = _dims(r)
            lines.append({"row": r, "model": model, "mode": mode, "dtype": dtype, "batch": batch, "seq": seq,
                          "parallel": r.get("cell", "parallel"), "gpus": dims["world_size"],
                          "strategy": dims.get("strategy"), "step_s": step, "tokens_per_s": tps,
                          "floor_s": floors.get("floor_s"), "binds": floors.get("binds"),
                          "pcie_s": floors.get("pcie_s"), "gather_s": floors.get("gather_s"),
                          "compute_floor_s": floors.get("compute_s")})
        base = next((x for x in lines if x["parallel"] == "single"), None)
        for x in sorted(lines, key=lambda x: (x["gpus"], x["parallel"])):
            ok = base is not None and base["tokens_per_s"] and x["tokens_per_s"]
            x["speedup"] = x["tokens_per_s"] / base["tokens_per_s"] if ok else None
            x["efficiency"] = x["speedup"] / x["gpus"] if x["speedup"] is not None else None
            both = base is not None and base["floor_s"] and x["floor_s"]
            x["floor_speedup"] = base["floor_s"] / x["floor_s"] if both else None
            x["step_over_floor"] = x["step_s"] / x["floor_s"] if x["step_s"] and x["floor_s"] else None
            out.append(x)
    return out
