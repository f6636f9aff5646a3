"""A table as data (cells that may name the row they came from) and its Markdown and HTML forms.

    t = Table("Peak memory", ("model", "GiB"), ((Cell("opt-1.3b"), Cell("1.47", source=src)),))
    markdown(t, link)      # link(source) -> relative href of the results file, or None
    html(t, link)

A cell with a source links its number to that row (file and line: `results/...jsonl#L5`); a source whose
commit is dirty or unknown marks the cell with DAGGER, and the table's notes say what it means. Rendering
is deterministic: the same table gives the same text.
"""
from __future__ import annotations

import html as _html
from dataclasses import dataclass

DAGGER = "†"
UNTRUSTED_NOTE = f"{DAGGER} the row's code is not a clean commit (dirty checkout or commit not recorded)."
PROJECTION_NOTE = "Rows marked projection are extrapolations of the fits to sizes not measured here, not measurements."


@dataclass(frozen=True)
class Cell:
    text: str
    source: object = None         # load.Source: the row this number came from
    kind: str = ""                # "projection" (an extrapolation), "bad", "good", "muted"
    title: str | None = None      # hover text in HTML

    @property
    def marked(self) -> str:
        if self.source is not None and not self.source.trusted:
            return self.text + DAGGER
        return self.text


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()
    numeric: tuple[bool, ...] = ()     # right-aligned columns

    @property
    def all_notes(self) -> tuple[str, ...]:
        extra = []
        if any(c.source is not None and not c.source.trusted for r in self.rows for c in r):
            extra.append(UNTRUSTED_NOTE)
        if any(c.kind == "projection" for r in self.rows for c in r):
            extra.append(PROJECTION_NOTE)
        return self.notes + tuple(extra)

    def is_numeric(self, i: int) -> bool:
        return bool(self.numeric[i]) if i < len(self.numeric) else False


def row(*cells) -> tuple[Cell, ...]:
    """Cells from Cell or plain text."""
    return tuple(c if isinstance(c, Cell) else Cell("" if c is None else str(c)) for c in cells)


def source_title(src) -> str:
    return f"{src.where} · cell {src.key or '-'} · {src.commit_label}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(t: Table, link) -> str:
    """GitHub-flavoured Markdown: numbers with a source become links to their row."""
    def cell(c: Cell) -> str:
        text = _md_escape(c.marked)
        if c.kind == "projection":
            text = f"*{text}*"
        href = link(c.source) if c.source is not None else None
        return f"[{text}]({href})" if href else text

    out = ["| " + " | ".join(_md_escape(h) for h in t.header) + " |",
           "|" + "|".join("---:" if t.is_numeric(i) else "---" for i in range(len(t.header))) + "|"]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in t.rows]
    notes = t.all_notes
    if notes:
        out.append("")
        out += [f"{n}  " if i < len(notes) - 1 else n for i, n in enumerate(notes)]
    return "\n".join(out)


def html(t: Table, link) -> str:
    """An HTML table; a linked number's title names its file, line, cell and commit."""
    e = _html.escape
    head = "".join(f'<th class="{"num" if t.is_numeric(i) else ""}">{e(h)}</th>' for i, h in enumerate(t.header))
    parts = ["<table>", f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    for r in t.rows:
        tds = []
        for i, c in enumerate(r):
            cls = " ".join(x for x in ("num" if t.is_numeric(i) else "", c.kind,
                                       "untrusted" if c.source is not None and not c.source.trusted else "") if x)
            title = c.title or (source_title(c.source) if c.source is not None else None)
            text = e(c.marked)
            href = link(c.source) if c.source is not None else None
            if href:
                text = f'<a href="{e(href)}">{text}</a>'
            attrs = (f' class="{cls}"' if cls else "") + (f' title="{e(title)}"' if title else "")
            tds.append(f"<td{attrs}>{text}</td>")
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts.append("</tbody></table>")
    notes = t.all_notes
    if notes:
        parts.append('<p class="notes">' + "<br>".join(e(n) for n in notes) + "</p>")
    return "\n".join(parts)
