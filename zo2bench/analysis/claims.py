"""The design documents' claims as typed data: every table cell and every quantitative statement.

    from zo2bench.analysis import claims
    all_ = claims.load()                          # list[Claim], document order
    c = claims.get("002-1.2-opt-1.3b-gpu-mem-zo2")
    c.value, c.unit, c.quantity, c.model, c.mode  # 2.6, "GB", "gpu_memory", "opt-1.3b", "zo2"
    claims.check_document(c)                      # the document's own arithmetic, where it has some
    claims.documents()                            # {"000": {...title, file, hardware}, "002": {...}}

The data are zo2bench/analysis/claims/<document>.toml, shipped inside the package (never read from the
shared seeds at run time). A file holds explicit `[[claims]]` and `[[tables]]`; a table is stored as its
rows verbatim, and each cell becomes one claim by its column's description (quantity, unit, sense...),
so the quoted text is the document's own line. Cells that are not claims (N/A, TBD, words) are either
given an explicit claim in `[tables.cells]` or listed in `skip` with the reason.

Fields that say what a claim is about, so it can be matched to measurements: quantity (QUANTITIES),
model (a catalog name or a document shape of exact.SHAPES) or params_range (a size band), mode, batch,
seq, dtype, view (a memory view, evidence.VIEWS), baseline_mode (the other side of a ratio), gpu (the
GPU a hardware-bound figure was stated for). `assumed` names the fields the document left unsaid and
the data fill in (e.g. batch 1 and T 2048, the setting of Appendix A.2). `check` is an arithmetic
expression over other claims ({id} or, in a table, {Column}) and formulas.py functions that the
document's own figures imply; check_document() evaluates it.
"""
from __future__ import annotations

import ast
import math
import operator
import re
import tomllib
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

from zo2bench.errors import UserError

DATA_DIR = Path(__file__).with_name("claims")

SENSES = {
    "point": "a value the measurement should be near",
    "ceiling": "an upper bound: a requirement or limit the measurement should stay under",
    "floor": "a lower bound: a benefit the measurement should reach",
    "range": "a band [lo, hi] the measurement should fall in",
    "exact": "a count that should match exactly",
}

# quantity -> what it is, in the claim's words
QUANTITIES = {
    "params": "parameter count of a model",
    "layers": "number of transformer blocks",
    "offloaded_blocks": "transformer blocks kept on the CPU and streamed (zo2)",
    "gpu_memory": "peak GPU memory of a training step (see view)",
    "host_memory": "peak host (CPU) memory (see view)",
    "component_size": "one term of a GPU memory composition (see component)",
    "component_share": "one term's share of a GPU memory composition",
    "reduction": "GPU memory of baseline_mode over that of mode (×)",
    "memory_saving": "GPU memory of baseline_mode minus that of mode",
    "memory_ratio": "GPU memory of mode over that of baseline_mode",
    "growth_per_b_params": "memory growth per billion parameters (slope over models)",
    "tokens_per_s": "training tokens per second (batch × seq per step)",
    "it_per_s": "training steps per second",
    "step_time": "seconds per training step, or one part of it (see component)",
    "slowdown_vs_backprop": "tokens/s of baseline_mode (backprop) over that of mode (×)",
    "efficiency": "T_compute / (T_compute + T_transfer): step time without offload over with it",
    "time_per_epoch": "hours per epoch",
    "fits": "whether the model trains in this mode on one GPU (1 yes, 0 no)",
    "max_model_size": "largest model (parameters) a configuration can train",
    "model_size_ratio": "largest model of mode over the largest of baseline_mode",
    "pcie_bandwidth": "host-device bandwidth needed or available",
    "bandwidth_gain": "bandwidth of one PCIe generation over the current one",
    "iterations": "iterations to convergence",
    "epochs": "epochs to convergence",
    "formula_constant": "a constant of a formula (see component)",
    "accuracy_ratio": "accuracy of ZO over that of backprop",
    "energy_savings": "energy saved per token against backprop",
    "power_change": "change of GPU or CPU power against backprop (see component)",
    "training_time": "wall-clock time of a training run",
    "cost": "cost of a training run",
    "cost_rate": "cloud price per GPU-hour",
    "savings": "cost saved against backprop",
    "budget": "price of a system configuration",
    "storage": "disk space",
    "dtype_memory_ratio": "memory of fp32 over that of fp16",
    "hardware_limit": "a limit of available hardware, not a property of ZO2",
}


@dataclass(frozen=True)
class Claim:
    id: str                 # stable: "<document>-<section>-<row>-<column>" for table cells
    document: str           # "000" or "002"
    section: str            # "1.2", "A.1", or the heading of an unnumbered section
    text: str               # quoted verbatim from the document (a table cell's whole row)
    value: float | tuple[float, float]   # in `unit`; a (lo, hi) range where the document gives one
    unit: str               # units.UNITS
    hardware: str           # what it was stated for, e.g. "4x RTX 3090 (24 GB)"; "unstated" if silent
    quantity: str           # QUANTITIES
    sense: str = "point"    # SENSES
    column: str | None = None   # the table column, for a table cell
    model: str | None = None    # catalog name or exact.SHAPES name
    params_range: tuple[float, float] | None = None   # [lo, hi) parameters, for a claim about a size band
    mode: str | None = None          # zo2 | mezo | fo-adamw (backprop)
    baseline_mode: str | None = None  # the other side of a ratio or difference
    batch: int | None = None
    seq: int | None = None
    dtype: str | None = None
    view: str | None = None          # memory view (evidence.VIEWS)
    component: str | None = None     # which term or part, for component_size, step_time, formula_constant...
    gpu: str | None = None           # a GPU name the figure is bound to ("RTX 3090"), for speed-like claims
    check: str | None = None         # the document's own arithmetic that should give `value`
    check_sense: str = "point"       # how check_document compares: "point", or "floor"/"ceiling" for "$50,000+"
    test: str | None = None          # what run would test it, where the suite's runs cannot
    assumed: tuple[str, ...] = ()    # fields the document leaves unsaid, filled in by the data
    note: str = ""

    @property
    def is_range(self) -> bool:
        return isinstance(self.value, tuple)


@dataclass(frozen=True)
class DocumentCheck:
    """A claim against the document's own arithmetic (its `check` expression)."""

    claim_id: str
    expression: str
    stated: float | tuple[float, float]
    recomputed: float
    holds: bool
    tolerance: str


# -- loading ----------------------------------------------------------------------------------------
_CLAIM_FIELDS = {f.name for f in fields(Claim)}


def documents() -> dict[str, dict]:
    """The documents' head fields (document, file, title, hardware) by document id."""
    return {d["document"]: {k: v for k, v in d.items() if k not in ("claims", "tables")} for d in _raw()}


@cache
def _raw() -> tuple[dict, ...]:
    files = sorted(DATA_DIR.glob("*.toml"))
    if not files:
        raise UserError(f"no claim files in {DATA_DIR}")
    out = []
    for p in files:
        try:
            out.append(tomllib.loads(p.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{p}: {e}") from None
    return tuple(out)


@cache
def _load() -> tuple[Claim, ...]:
    out: list[Claim] = []
    for doc in _raw():
        head = {"document": doc["document"], "hardware": doc.get("hardware", "unstated")}
        for t in doc.get("tables", []):
            out.extend(_table_claims(head, t))
        for c in doc.get("claims", []):
            out.append(_make(head, c, where=c.get("id", "?")))
    ids = [c.id for c in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise UserError(f"duplicate claim ids: {', '.join(dup)}")
    return tuple(out)


def load(document: str | None = None) -> list[Claim]:
    """Every claim (of one document if given), in the order of the data files."""
    return [c for c in _load() if document is None or c.document == document]


def get(claim_id: str) -> Claim:
    for c in _load():
        if c.id == claim_id:
            return c
    raise UserError(f"unknown claim '{claim_id}'")


def _make(head: dict, d: dict, where: str) -> Claim:
    unknown = set(d) - _CLAIM_FIELDS
    if unknown:
        raise UserError(f"claim {where}: unknown fields {sorted(unknown)}")
    d = {**head, **d}
    for k in ("value", "params_range"):
        if isinstance(d.get(k), list):
            d[k] = tuple(float(v) for v in d[k])
    if isinstance(d.get("value"), int):
        d["value"] = float(d["value"])
    d["assumed"] = tuple(d.get("assumed", ()))
    try:
        return Claim(**d)
    except TypeError as e:
        raise UserError(f"claim {where}: {e}") from None


# -- tables ----------------------------------------------------------------------------------------
_SCALE = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
_NUM = r"\d[\d,]*(?:\.\d+)?"
_CELL = re.compile(rf"^(?P<tilde>~)?\$?(?P<a>{_NUM})(?:\s*-\s*\$?(?P<b>{_NUM}))?\s*(?P<scale>[KMBT](?![a-zA-Z]))?"
                   rf"\s*(?P<unit>GB|MB|TB|x|%|hours|it/s)?\s*(?:\((?P<paren>[^)]*)\))?$")


def split_row(row: str) -> list[str]:
    """The cells of a Markdown (or |-separated) table row, stripped."""
    s = row.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def parse_cell(text: str) -> dict | None:
    """'2.6 GB' -> {value: 2.6, unit: 'GB'}; '125M' -> 125e6; '5-10' -> (5, 10); '$48 (A10 24GB)' ->
    {value: 48, paren: 'A10 24GB'}; None for a cell that is not a number (N/A, TBD, words)."""
    m = _CELL.match(text.strip())
    if not m:
        return None
    scale = _SCALE[m["scale"]] if m["scale"] else 1.0
    a = float(m["a"].replace(",", "")) * scale
    value = (a, float(m["b"].replace(",", "")) * scale) if m["b"] else a
    return {"value": value, "unit": m["unit"], "paren": m["paren"], "approx": bool(m["tilde"])}


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", s.lower()).strip("-")


def _table_claims(head: dict, t: dict) -> list[Claim]:
    cols = split_row(t["header"])
    key = t.get("key", cols[0])
    specs = {c["name"]: c for c in t["columns"]}
    ignore = t.get("ignore_columns", {})
    if set(specs) - set(cols) or set(cols) - set(specs) - set(ignore) - {key}:
        raise UserError(f"table {t['id']}: columns {sorted(specs)} + ignored {sorted(ignore)} do not match its "
                        f"header {cols}")
    rows_meta, cells, skip = t.get("rows_meta", {}), t.get("cells", {}), t.get("skip", {})
    out = []
    for row in t["rows"]:
        vals = split_row(row)
        if len(vals) != len(cols):
            raise UserError(f"table {t['id']}: row has {len(vals)} cells, header {len(cols)}: {row}")
        by_col = dict(zip(cols, vals))
        rkey = by_col[key]
        meta = dict(rows_meta.get(rkey, {}))
        rslug, n = meta.pop("slug", slug(rkey)), meta.pop("n", None)
        ids = {c: f"{t['id']}-{rslug}-{specs[c].get('slug', slug(c))}" for c in specs}
        for col in specs:
            cid = ids[col]
            spec = {k: v for k, v in specs[col].items() if k not in ("name", "slug", "paren", "pattern")}
            d = {**t.get("defaults", {}), **spec, **meta}
            parsed = _parse_spec_cell(by_col[col], specs[col])
            override = cells.get(rkey, {}).get(col)
            if parsed is None and override is None:
                if f"{rkey}|{col}" not in skip:
                    raise UserError(f"table {t['id']}: cell '{by_col[col]}' ({rkey}, {col}) is neither a number, "
                                    f"an explicit claim in cells, nor listed in skip")
                continue
            if parsed is not None:
                d["value"] = parsed["value"]
                if d.get("unit") == "auto":
                    d["unit"] = parsed["unit"]
                elif parsed["unit"] and parsed["unit"] != d.get("unit"):
                    raise UserError(f"table {t['id']}: cell '{by_col[col]}' has unit {parsed['unit']}, "
                                    f"column says {d.get('unit')}")
                if parsed["paren"] and specs[col].get("paren") == "hardware":
                    d["hardware"] = parsed["paren"]
            d.update(override or {})
            if isinstance(d.get("check"), str):
                d["check"] = re.sub(r"\{([^{}]+)\}", lambda m, ids=ids: "{" + ids.get(m[1], m[1]) + "}", d["check"])
                if n is not None:
                    d["check"] = d["check"].replace("{n}", repr(float(n)))
            d.update(id=cid, section=t["section"], text=row.strip(), column=col)
            out.append(_make(head, d, where=cid))
    return out


def _parse_spec_cell(text: str, spec: dict) -> dict | None:
    """A cell by its column's `pattern` (a regex with groups v and, optionally, hw) or by parse_cell."""
    if "pattern" not in spec:
        return parse_cell(text)
    m = re.search(spec["pattern"], text)
    if not m:
        return None
    gd = m.groupdict()
    return {"value": float(gd["v"]), "unit": gd.get("unit"), "paren": gd.get("hw") or text, "approx": False}


# -- the document's own arithmetic ------------------------------------------------------------------
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}
_ATTRS = {"total", "it_per_s", "embeddings", "head", "blocks", "workspace", "overhead"}  # of formulas' results
DOCUMENT_RTOL = 0.02   # recomputed within 2% of the stated figure, or equal to it at its stated rounding


def _functions() -> dict:
    from zo2bench.analysis import formulas

    fns = {n: getattr(formulas, n) for n in dir(formulas) if not n.startswith("_") and callable(getattr(formulas, n))}
    return {**fns, "sqrt": math.sqrt, "min": min, "max": max, "abs": abs}


def evaluate(expression: str) -> float:
    """An arithmetic expression over {claim-id} references (their values; a range gives its middle),
    numbers, and functions of formulas.py. No names, attributes or anything else."""
    refs = {}

    def sub(m):
        name = f"_r{len(refs)}"
        v = get(m[1]).value
        refs[name] = (v[0] + v[1]) / 2 if isinstance(v, tuple) else v
        return name

    src = re.sub(r"\{([^{}]+)\}", sub, expression)
    fns = _functions()

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Name) and node.id in refs:
            return refs[node.id]
        if isinstance(node, ast.Attribute) and node.attr in _ATTRS:   # e.g. step_time(...).total
            return getattr(ev(node.value), node.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in fns:
            return fns[node.func.id](*[ev(a) for a in node.args], **{k.arg: ev(k.value) for k in node.keywords})
        raise UserError(f"check '{expression}': {ast.dump(node)[:60]} is not allowed")

    return float(ev(ast.parse(src, mode="eval")))


def _decimals(text: str, value: float) -> int | None:
    """How many decimals the figure is written with in the claim text (None if not found)."""
    for m in re.finditer(_NUM, text):
        s = m[0].replace(",", "")
        if math.isclose(float(s), value, rel_tol=1e-9):
            return len(s.split(".")[1]) if "." in s else 0
    return None


def check_document(claim: Claim) -> DocumentCheck | None:
    """The claim against the arithmetic its document implies (None where the data give no check)."""
    if not claim.check:
        return None
    r = evaluate(claim.check)
    v = claim.value
    if isinstance(v, tuple):
        ok = v[0] * (1 - DOCUMENT_RTOL) <= r <= v[1] * (1 + DOCUMENT_RTOL)
        tol = f"within [{v[0]:g}, {v[1]:g}] ± {DOCUMENT_RTOL:.0%}"
    elif claim.check_sense == "floor":
        ok, tol = r >= v * (1 - DOCUMENT_RTOL), f"at least the stated figure − {DOCUMENT_RTOL:.0%}"
    elif claim.check_sense == "ceiling":
        ok, tol = r <= v * (1 + DOCUMENT_RTOL), f"at most the stated figure + {DOCUMENT_RTOL:.0%}"
    else:
        d = _decimals(claim.text, v)
        half_ulp = 0.5 * 10 ** -d if d is not None else 0.0
        ok = abs(r - v) <= max(DOCUMENT_RTOL * abs(v), half_ulp)
        tol = f"±{DOCUMENT_RTOL:.0%}" + (f" or rounds to the stated {d} decimals" if d is not None else "")
    return DocumentCheck(claim.id, claim.check, v, r, ok, tol)
