"""Formatting shared by the reports' tables: sizes, significant figures, intervals, fitted constants, rows.

    gib(1.5 * 2**30) -> "1.50"; sig(12345.6) -> "12,346"; est_text(estimate) -> "c_w = 1.5 [1.3, 1.7]"
"""
from __future__ import annotations

import math

from zo2bench.analysis.models import spec_of
from zo2bench.report.table import Cell

GIB = 2.0**30


def params_text(n: float) -> str:
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if n >= div:
            return f"{n / div:.3g}{suf}"
    return f"{n:,.0f}"


def gib(v) -> str:
    return "–" if v is None else f"{v / GIB:.2f}"


def sig(v, n=3) -> str:
    if v is None or math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞"
    if v == 0:
        return "0"
    return f"{v:.{n}g}" if abs(v) < 1000 else f"{v:,.0f}"


def pct(v, signed=True) -> str:
    return "–" if v is None else (f"{100 * v:+.1f}%" if signed else f"{100 * v:.1f}%")


def band(iv, fmt) -> str:
    return "" if iv is None else f" [{fmt(iv[0])}, {fmt(iv[1])}]"


def est_text(e) -> str:
    """A fitted parameter in its unit: bytes in GiB, seconds in ms, multiples as they are."""
    fmt = {"bytes": lambda v: f"{v / GIB:.3g} GiB", "s": lambda v: f"{v * 1e3:.3g} ms"}.get(e.unit, lambda v: sig(v))
    if e.at_bound:
        return f"{e.name} = {fmt(e.value)} (at its bound)"
    ci = "" if e.low is None else f" [{fmt(e.low)}, {fmt(e.high)}]"
    return f"{e.name} = {fmt(e.value)}{ci}"


def cell_of(r):
    return r.get("cell") or {}


def by_size(rows):
    order = {"zo2": 0, "mezo": 1, "fo-adamw": 2, "fo-sgd": 3}
    return sorted(rows, key=lambda r: (spec_of(cell_of(r)["model"]).n_params(), order.get(cell_of(r)["mode"], 9),
                                       cell_of(r)["batch"], cell_of(r)["seq"]))


def row_cell(r) -> Cell:
    """The row a line of a table came from: file name and line, linked."""
    return Cell(r.source.where.rsplit("/", 1)[-1], source=r.source)
