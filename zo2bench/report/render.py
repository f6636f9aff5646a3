"""Render the reports: an index and one page per series, each as self-contained HTML and as Markdown.

    written = render("results", "reports")      # paths written; warnings on stderr; UserError if no results

    reports/index.html  index.md                 machines, calibrations, claims and verdicts per machine
    reports/<series>.html  <series>.md           figures and tables of that series, a section per machine
    reports/convergence_scaling.html  .md        the convergence series (report/convergence_section.py), made
                                                 with or without its rows (then saying it was not measured)
    reports/figures/<series>-<machine>-<name>.svg   the figures the Markdown shows (the HTML embeds its own)

A page is a list of blocks (heading, text, table, figure, details) built here from the analysis and drawn by
Jinja2 templates (report/templates/, StrictUndefined: a missing field fails loudly). The HTML embeds every
figure as a data: URI, so it opens from the file system with nothing else. The same results give the same
bytes: no timestamps, sorted inputs, fixed rounding and SVG ids (figures.svg).
"""
from __future__ import annotations

import base64
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import markupsafe

from zo2bench.analysis import convergence as cv
from zo2bench.analysis import load as loader
from zo2bench.analysis import scaling
from zo2bench.report import convergence_section, documents, figures, sections
from zo2bench.report import table as tbl


@dataclass
class Block:
    kind: str                      # heading | text | table | figure | details | list
    text: str = ""
    level: int = 2
    table: tbl.Table | None = None
    svg: str = ""
    file: str = ""                 # figure file, relative to the output folder
    items: tuple = ()
    blocks: list = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "".join(ch if ch.isalnum() else "-" for ch in self.text.lower()).strip("-")

    @property
    def data_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg.encode()).decode()


class Figures:
    """Draws figures once and keeps them for the HTML and the Markdown of one page."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.files: dict[str, str] = {}

    def __call__(self, name: str, caption: str, fn, *args) -> Block:
        text = figures.svg(fn, *args)
        # names carry machine, profile and data labels ("gpu (data v5-42915d5c)"): file names keep [A-Za-z0-9._-]
        file = "figures/" + re.sub(r"[^A-Za-z0-9._]+", "-", f"{self.prefix}-{name}").strip("-") + ".svg"
        self.files[file] = text
        return Block("figure", caption, svg=text, file=file)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("zo2bench.report", "templates"),
                             undefined=jinja2.StrictUndefined, autoescape=jinja2.select_autoescape(["html.j2"]),
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    return env


def linker(results_root: str, out_dir: Path):
    """source -> href of its results file (and line) relative to the page."""
    def link(src) -> str | None:
        if src is None:
            return None
        rel = os.path.relpath(Path(results_root) / src.file, out_dir).replace(os.sep, "/")
        return f"{rel}#L{src.line}" if src.line else rel
    return link


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def with_convergence_verdicts(docs, verdicts: list):
    """The documents' verdicts with the convergence series' in place of the ones they judge again: a claim the
    series judged on a machine is no longer "not tested here" there (nor, with no machine, in general)."""
    import dataclasses

    verdicts = [v for v in verdicts if v.machine_id is not None]  # without rows: nothing judged, nothing to replace
    if not docs.available or docs.no_verdicts or not verdicts:
        return docs
    judged = {(v.claim_id, v.machine_id) for v in verdicts}
    ids = {v.claim_id for v in verdicts if v.machine_id is not None}
    keep = [v for v in docs.verdicts if (v.claim_id, v.machine_id) not in judged
            and not (v.machine_id is None and v.claim_id in ids and v.basis == "none")]
    return dataclasses.replace(docs, verdicts=tuple(keep) + tuple(verdicts))


def render(results_dir="results", out_dir="reports", progress=lambda msg: print(msg, file=sys.stderr)) -> list[Path]:
    out = Path(out_dir)
    res = loader.load(results_dir)
    for w in res.warnings:
        print(f"zo2bench: warning: {w}", file=sys.stderr)
    analyses = {}
    for m in res.machines():
        progress(f"zo2bench: fitting the rows of {m}")
        analyses[m] = scaling.analyse(res, m)
    env = _env()
    link = linker(res.root, out)
    env.filters["md_table"] = lambda t: tbl.markdown(t, link)
    env.filters["html_table"] = lambda t: markupsafe.Markup(tbl.html(t, link))
    progress("zo2bench: judging the documents' claims")
    docs = documents.load(res.root, analyses)
    progress("zo2bench: the convergence series")
    conv = cv.tables(res.root)
    docs = with_convergence_verdicts(docs, conv.get("verdict_list") or [])
    series = sorted({s for m in res.machines() for s in res.series(m)} - {convergence_section.SERIES})
    nav = [("index", "index")] + [(s, s) for s in [*series, convergence_section.SERIES]]
    pages = []
    figs = Figures("index")
    pages.append(("index", "zo2bench report", sections.index_blocks(res, analyses, docs, figs), figs))
    for s in series:
        progress(f"zo2bench: drawing the {s} report")
        figs = Figures(s)
        pages.append((s, f"{s}: zo2bench report", sections.series_blocks(s, res, analyses, docs, figs), figs))
    figs = Figures(convergence_section.SERIES)
    pages.append((convergence_section.SERIES, f"{convergence_section.SERIES}: zo2bench report",
                  convergence_section.blocks(conv, docs, figs), figs))
    written = []
    for name, title, blocks, figs in pages:
        ctx = {"title": title, "blocks": blocks, "nav": nav, "page": name, "warnings": list(res.warnings),
               "results_root": res.root}
        for kind in ("html", "md"):
            path = out / f"{name}.{kind}"
            _write(path, env.get_template(f"page.{kind}.j2").render(**ctx))
            written.append(path)
        for file, text in sorted(figs.files.items()):
            _write(out / file, text)
            written.append(out / file)
    # the figures folder holds this render's figures only: one that no page shows any more (a renamed profile,
    # a machine whose rows left results/) would otherwise stay beside the pages as if it were current
    for stale in sorted(set((out / "figures").glob("*.svg")) - set(written)):
        stale.unlink()
    return written
