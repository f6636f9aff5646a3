"""What the measurements say about one claim: the values that test it, each with the rows behind it.

    from zo2bench.analysis import claims, evidence, matching
    ev = evidence.load("results")
    matching.values(claims.get("002-1.2-opt-1.3b-reduction"), ev, "h100-80gb-hbm3")
    # [Measured(value=fo-adamw bytes / zo2 bytes, unit="ratio",
    #           cell="opt-1.3b zo2/fo-adamw fp16 b1 T2048 nvml_process [memory_scaling]",
    #           provenance=(the zo2 row, the fo-adamw row))]

A claim is matched on its structured fields: quantity, model (or params_range), mode, dtype, batch, seq,
view; a field the claim leaves None matches every row, except that a claim naming no model matches only
models of the documents' family (models.DOCUMENT_FAMILY: OPT; Llama-style rows are reported, not judged).
Memory comes from the measured phase of sweep rows (the steady state of training) and bench-step's allocator
peaks. Derived quantities pair rows of one machine at the same model, dtype, batch, seq and view:
    reduction = baseline / mode GPU memory        memory_saving = baseline − mode     memory_ratio = mode / baseline
    slowdown_vs_backprop = baseline / mode tokens/s    efficiency = mode / baseline tokens/s (mezo: no transfer)
    power_change = mode / baseline GPU power − 1       energy_savings = 1 − mode / baseline energy per token
    growth_per_b_params = least-squares slope of memory over parameters across the matched models
    model_size_ratio = largest model that ran in mode / largest in baseline_mode (a lower bound when no
                       cell of mode failed: the grid, not the memory, stopped it)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zo2bench.analysis import exact
from zo2bench.analysis.claims import Claim
from zo2bench.analysis.evidence import Evidence, Provenance, provenance
from zo2bench.analysis.models import of_document_family


@dataclass(frozen=True)
class Measured:
    value: float                         # in base units
    unit: str                            # the base unit
    cell: str                            # "opt-1.3b zo2 fp16 b1 T2048"
    provenance: tuple[Provenance, ...]   # every row the value was computed from
    verdict: str = ""                    # this value alone against the rule (set by verdicts)
    ratio: float | None = None           # value / claimed (the middle of a claimed range)
    bound: str | None = None             # "lower": the value is a lower bound (e.g. the largest model run)
    partial: str | None = None           # what the value leaves out of the claim (e.g. "GPU energy only")
    side: str | None = None              # "below", "within" or "above" the claimed value's tolerance band


DIRECT = {"gpu_memory", "host_memory", "tokens_per_s", "it_per_s", "offloaded_blocks", "fits", "energy_per_token",
          "step_time"}
# quantity -> (measured quantity, f(mode value, baseline value))
PAIRED = {
    "reduction": ("gpu_memory", lambda m, b: b / m),
    "memory_saving": ("gpu_memory", lambda m, b: b - m),
    "memory_ratio": ("gpu_memory", lambda m, b: m / b),
    "slowdown_vs_backprop": ("tokens_per_s", lambda m, b: b / m),
    "efficiency": ("tokens_per_s", lambda m, b: m / b),
    "power_change": ("gpu_power", lambda m, b: m / b - 1),
    "energy_savings": ("energy_per_token", lambda m, b: 1 - m / b),
}
DEFAULT_VIEW = {"gpu_memory": "nvml_process", "host_memory": "host_rss"}
PARTIAL = {"energy_savings": "GPU energy only (NVML); CPU energy is not measured"}
SERIES_OF = {"gpu_memory": "memory_scaling", "host_memory": "memory_scaling", "reduction": "memory_scaling",
             "memory_saving": "memory_scaling", "memory_ratio": "memory_scaling", "offloaded_blocks": "memory_scaling",
             "growth_per_b_params": "memory_scaling", "fits": "memory_scaling", "model_size_ratio": "memory_scaling",
             "slowdown_vs_backprop": "memory_scaling", "power_change": "memory_scaling",
             "energy_savings": "memory_scaling", "energy_per_token": "memory_scaling"}


def measurable(claim: Claim) -> bool:
    """Whether the stored series could hold values for this claim at all."""
    q = claim.quantity
    if q == "step_time":
        return claim.component is None
    if q == "power_change":
        return claim.component == "gpu"
    if q == "component_size":
        return claim.view is not None      # a term with a measured view (overhead: outside the allocator)
    return q in DIRECT or q in PAIRED or q in ("growth_per_b_params", "model_size_ratio")


# The real OPT family, for claims about "n" in general (1.1's fractions).
OPT_FAMILY = ("opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b", "opt-13b", "opt-30b", "opt-66b", "opt-175b")
_CATALOG_COMPONENTS = ("embeddings", "head", "block")


def from_catalog(claim: Claim) -> list[Measured]:
    """Exact counts that test a claim: parameters and layers of a named model, and the weights of one of
    formula 1.1's terms (embeddings, head, block) of the named model, or, for a claim in bytes per
    parameter, of every OPT model. Empty where the catalog says nothing about the claim."""
    q = claim.quantity
    if q in ("params", "layers") and claim.model:
        try:
            s = exact.spec(claim.model)
        except Exception:
            return []
        src = "catalog" if claim.model not in exact.SHAPES else "exact.SHAPES (published configuration)"
        v = s.n_params() if q == "params" else s.layers
        return [Measured(float(v), q, f"{claim.model} ({src})", ())]
    if q != "component_size" or claim.component not in _CATALOG_COMPONENTS:
        return []
    b = exact.BYTES_PER_PARAM[claim.dtype or "fp16"]
    per_param = claim.unit == "bytes/param"
    out = []
    for name in ([claim.model] if claim.model else OPT_FAMILY if per_param else []):
        s = exact.spec(name)
        n = {"embeddings": s.embed_params(), "head": s.head_params(), "block": s.block_params()}[claim.component]
        if per_param:   # 1.1: a fraction of n; the block's of n/L
            denom = s.n_params() / s.layers if claim.component == "block" else s.n_params()
            out.append(Measured(n * b / denom, "bytes/param", f"{name} {claim.component} ({claim.dtype})", ()))
        else:
            out.append(Measured(float(n * b), "bytes", f"{name} {claim.component}: {n:,} params x {b} B", ()))
    return out


def machine_gpu(ev: Evidence, machine: str) -> str | None:
    g = ev.table.loc[ev.table["machine_id"] == machine, "gpu"].dropna()
    return str(g.iloc[0]) if len(g) else None


def _rows(ev: Evidence, machine: str, quantity: str, claim: Claim, mode: str | None, view: str | None):
    t = ev.select(machine_id=machine, quantity=quantity, mode=mode, dtype=claim.dtype, batch=claim.batch,
                  seq=claim.seq, view=view)
    t = t[t["variant"].isna()]
    if quantity in ("gpu_memory", "host_memory", "energy_per_token", "gpu_power"):
        t = t[t["phase"].isin(["measured", "run"])]
    if quantity in ("tokens_per_s", "it_per_s", "step_time"):
        t = t[t["view"].isna()]
    if claim.model:
        return t[t["model"] == claim.model]
    # A claim about models in general or of a size class is about the documents' (OPT) models
    t = t[t["model"].map(lambda m: isinstance(m, str) and of_document_family(m)).astype(bool)]  # bool: t may be empty
    if claim.params_range:
        lo, hi = claim.params_range
        t = t[(t["n_params"] >= lo) & (t["n_params"] < hi)]
    return t


def _cell(r, mode: str | None = None) -> str:
    parts = [r["model"], mode or r["mode"], r["dtype"], f"b{int(r['batch'])}" if r["batch"] == r["batch"] else None,
             f"T{int(r['seq'])}" if r["seq"] == r["seq"] else None, r["view"] if isinstance(r["view"], str) else None]
    return " ".join(str(p) for p in parts if p) + (f" [{r['series']}]" if r["series"] else "")


def values(claim: Claim, ev: Evidence, machine: str) -> list[Measured]:
    """The measured values that test `claim` on one machine (empty where none do)."""
    q = claim.quantity
    if not measurable(claim):
        return []
    if q in DIRECT or q == "component_size":
        view = claim.view or DEFAULT_VIEW.get(q)
        t = _rows(ev, machine, "gpu_memory" if q == "component_size" else q, claim, claim.mode, view)
        return [Measured(float(r["value"]), r["unit"], _cell(r), (provenance(r),)) for _, r in t.iterrows()]
    if q in PAIRED:
        return _paired(claim, ev, machine)
    if q == "growth_per_b_params":
        return _slope(claim, ev, machine)
    return _largest(claim, ev, machine)


def _paired(claim: Claim, ev: Evidence, machine: str) -> list[Measured]:
    quantity, f = PAIRED[claim.quantity]
    view = claim.view or DEFAULT_VIEW.get(quantity)
    mine = _rows(ev, machine, quantity, claim, claim.mode, view)
    theirs = _rows(ev, machine, quantity, claim, claim.baseline_mode, view)
    on = ["model", "dtype", "batch", "seq", "view", "phase", "series"]
    mine, theirs = mine.fillna({"view": "", "phase": ""}), theirs.fillna({"view": "", "phase": ""})
    pairs = mine.merge(theirs, on=on, suffixes=("", "_b"))
    out = []
    for _, r in pairs.iterrows():
        b = {k[:-2]: r[k] for k in pairs.columns if k.endswith("_b")} | {k: r[k] for k in on}
        out.append(Measured(float(f(r["value"], r["value_b"])), "ratio" if claim.quantity != "memory_saving" else
                            "bytes", _cell(r, f"{claim.mode}/{claim.baseline_mode}"),
                            (provenance(r), provenance(b)), partial=PARTIAL.get(claim.quantity)))
    return out


def _slope(claim: Claim, ev: Evidence, machine: str) -> list[Measured]:
    quantity = "host_memory" if (claim.view or "").startswith(("host", "pinned")) else "gpu_memory"
    t = _rows(ev, machine, quantity, claim, claim.mode, claim.view or DEFAULT_VIEW[quantity])
    t = t[t["n_params"].notna()]
    per_model = t.groupby("model")
    if per_model.ngroups < 2:
        return []
    x = per_model["n_params"].first().to_numpy(float)
    y = per_model["value"].median().to_numpy(float)
    slope = float(np.polyfit(x, y, 1)[0])   # bytes per parameter
    models = ", ".join(per_model["n_params"].first().sort_values().index)
    return [Measured(slope, "bytes/param", f"slope over {models} ({claim.mode}, {t['view'].iloc[0]})",
                     tuple(provenance(r) for _, r in t.iterrows()))]


def _largest(claim: Claim, ev: Evidence, machine: str) -> list[Measured]:
    def largest(mode):
        t = ev.select(machine_id=machine, quantity="fits", mode=mode, dtype=claim.dtype, batch=claim.batch,
                      seq=claim.seq)
        t = t[t["n_params"].notna()]
        ran = t[t["value"] == 1]
        if not len(ran):
            return None, None, False
        r = ran.loc[ran["n_params"].idxmax()]
        stopped = bool(((t["value"] == 0) & (t["n_params"] > r["n_params"])).any())
        return r, provenance(r), stopped

    m, pm, m_stopped = largest(claim.mode)
    b, pb, _ = largest(claim.baseline_mode)
    if m is None or b is None:
        return []
    bound = None if m_stopped else "lower"
    return [Measured(float(m["n_params"] / b["n_params"]), "ratio",
                     f"{m['model']} ({claim.mode}) / {b['model']} ({claim.baseline_mode})", (pm, pb), bound=bound)]


def did_not_fit(claim: Claim, ev: Evidence, machine: str) -> list[Provenance]:
    """Rows of the claim's model and mode that ran out of memory or were infeasible on this machine."""
    t = ev.select(machine_id=machine, quantity="fits", mode=claim.mode, dtype=claim.dtype, batch=claim.batch,
                  seq=claim.seq)
    t = t[(t["value"] == 0) & (t["model"] == claim.model)] if claim.model else t.iloc[0:0]
    return [provenance(r) for _, r in t.iterrows()]


def needs(claim: Claim) -> str:
    """The run that would test a claim the stored results do not reach."""
    if claim.test:
        return claim.test
    q = claim.quantity
    if q == "power_change" and claim.component != "gpu":
        return "CPU package power (RAPL), which the probes do not read"
    if q == "step_time" and claim.component:
        return f"per-part timing ({claim.component}) on {claim.hardware}"
    series = SERIES_OF.get(q, "throughput_scaling")
    model = claim.model
    if not model and claim.params_range:
        lo, hi = claim.params_range
        inside = [m for m in OPT_FAMILY if lo <= exact.spec(m).n_params() < hi]
        span = f"over {lo / 1e9:g} B" if hi >= 1e14 else f"of {lo / 1e9:g}-{hi / 1e9:g} B"
        model = " or ".join(inside) if inside else f"a model {span} parameters"
    what = " ".join(str(x) for x in (model, claim.mode, claim.dtype,
                                     f"b{claim.batch}" if claim.batch else None,
                                     f"T{claim.seq}" if claim.seq else None) if x)
    big = [m for m in (model or "").split(" or ") if m in exact.SHAPES or m in ("opt-66b", "opt-175b")]
    if big:
        gb = exact.host_memory(big[0], "fp16") / 1e9
        gpu_side = {m for m in (claim.mode, claim.baseline_mode) if m in ("mezo", "fo-adamw")}
        per_param = {"mezo": 2, "fo-adamw": 16}   # fp16 weights; fp32 weights, grads and two Adam moments
        parts = [f"{gb:,.0f} GB of fp16 weights in host memory"] if claim.mode in ("zo2", None) else []
        parts += [f"{per_param[m] * gb / 2:,.0f} GB of GPU memory for {m} (a multi-GPU host, issue 12)"
                  for m in sorted(gpu_side)]
        return f"a {series} cell of {what}: " + " and ".join(parts)
    if claim.dtype == "fp32":
        return f"the {series} series in fp32 (grid.dtypes = [\"fp32\"]): {what}"
    return f"a {series} cell of {what} (zo2bench sweep experiments/{series}.toml)"


def notes(claim: Claim, gpu: str | None) -> tuple[str, ...]:
    out = []
    if claim.assumed:
        shown = ", ".join(f"{k}={getattr(claim, k)}" for k in claim.assumed)
        out.append(f"the document does not state {', '.join(claim.assumed)}: judged at {shown}")
    if claim.hardware == "unstated":
        out.append(f"hardware unstated in the document; judged on {gpu}")
    elif claim.gpu and gpu and claim.gpu.lower() not in gpu.lower():
        out.append(f"stated on {claim.hardware}; judged on {gpu} (CUDA context and allocator differ by GPU and driver)")
    return tuple(out)
