"""Tables kept in README.md and docs/*.md, regenerated from the stored results between markers:

    <!-- zo2bench:table memory:h100 -->
    (whatever is here is replaced by the table named `memory` for the machine whose id starts with `h100`)
    <!-- /zo2bench:table -->

    changed = update(".", results)              # rewrites stale tables; returns the (file, name) it changed
    stale = update(".", results, check=True)    # rewrites nothing; returns the (file, name) that would change

NAME is one of report.tables.TABLES, optionally followed by ':' and a machine id (or a prefix of exactly one);
without it the results must hold one machine. Links in a table point from the Markdown file to the rows.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from zo2bench.errors import UserError
from zo2bench.report import table as tbl
from zo2bench.report import tables

MARKER = re.compile(r"(?P<open><!-- zo2bench:table (?P<name>[^ ]+) -->\n)(?P<body>.*?)"
                    r"(?P<close><!-- /zo2bench:table -->)", re.S)
OPEN = re.compile(r"<!-- zo2bench:table ")


def files(root: str | Path) -> list[Path]:
    root = Path(root)
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def _machine(results, name: str, wanted: str | None) -> str | None:
    if name in tables.MACHINE_FREE:
        return None
    have = list(results.machines())
    if wanted:
        hit = [m for m in have if m == wanted] or [m for m in have if m.startswith(wanted)]
        if len(hit) != 1:
            raise UserError(f"table {name}:{wanted}: {'several machines match' if hit else 'no such machine'}; "
                            f"machines: {', '.join(have) or 'none'}")
        return hit[0]
    if len(have) != 1:
        raise UserError(f"table {name}: results hold {len(have)} machines ({', '.join(have)}): "
                        f"name one as {name}:MACHINE")
    return have[0]


def table_text(results, spec: str, page: Path) -> str:
    """The Markdown of one marked table, its links relative to the page."""
    name, _, wanted = spec.partition(":")
    if name not in tables.TABLES:
        raise UserError(f"{page}: unknown table '{name}'; known: {', '.join(sorted(tables.TABLES))}")
    t = tables.TABLES[name][1](results, _machine(results, name, wanted or None))

    def link(src):
        rel = os.path.relpath(Path(results.root) / src.file, page.parent).replace(os.sep, "/")
        return f"{rel}#L{src.line}" if src.line else rel

    return tbl.markdown(t, link) + "\n"


def rewrite(text: str, results, page: Path) -> tuple[str, list[str]]:
    """The text with every marked table regenerated, and the names of those whose text changed."""
    if len(OPEN.findall(text)) != len(MARKER.findall(text)):
        raise UserError(f"{page}: a '<!-- zo2bench:table NAME -->' marker has no matching "
                        "'<!-- /zo2bench:table -->' on a line of its own after it")
    changed = []

    def sub(m):
        body = table_text(results, m.group("name"), page)
        if body != m.group("body"):
            changed.append(m.group("name"))
        return m.group("open") + body + m.group("close")

    return MARKER.sub(sub, text), changed


def update(root, results, check: bool = False) -> list[tuple[Path, str]]:
    out = []
    for page in files(root):
        text = page.read_text(encoding="utf-8")
        new, changed = rewrite(text, results, page)
        out += [(page, n) for n in changed]
        if changed and not check:
            tmp = page.with_name(f".{page.name}.tmp")
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, page)
    return out


def count(root) -> int:
    return sum(len(MARKER.findall(p.read_text(encoding="utf-8"))) for p in files(root))
