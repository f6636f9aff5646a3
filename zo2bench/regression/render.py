"""A comparison (compare.compare's dict) as text for a terminal, markdown for a pull request or
$GITHUB_STEP_SUMMARY, or JSON for machines.

    print(render(report, "text"))          # "text" | "markdown" | "json"

Times show in ms (under a second) or s, memory in MiB or GiB (2**20 and 2**30 bytes); the JSON keeps
seconds and bytes. Worse rows come first; markdown folds the rows that stayed the same into <details>.
"""
from __future__ import annotations

import json

from zo2bench.regression import hwclass

FORMATS = ("text", "markdown", "json")
COLUMNS = ("cell", "metric", "baseline", "candidate", "change", "verdict", "note")
MiB, GiB = 2**20, 2**30


def render(report: dict, fmt: str = "text") -> str:
    if fmt == "json":
        return json.dumps(report, indent=1, default=str) + "\n"
    if fmt == "markdown":
        return markdown(report)
    return text(report)


def value(v, unit: str | None) -> str:
    if v is None:
        return "-"
    if unit == "s":
        return f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.3f} s"
    if unit == "bytes":
        return f"{v / GiB:.2f} GiB" if v >= 10 * GiB else f"{v / MiB:,.1f} MiB"
    return str(v)


def cells(r: dict) -> list[str]:
    change = "" if r.get("change") is None else f"{100 * r['change']:+.1f}%"
    return [r["cell"], r["metric"], value(r["baseline"], r.get("unit")), value(r["candidate"], r.get("unit")),
            change, r["verdict"], r.get("note") or ""]


def _side(info: dict) -> str:
    commits = ", ".join(f"commit {c['commit'][:12] if c['commit'] else 'unknown'}{' (dirty)' if c['dirty'] else ''}"
                        for c in info["commits"])
    return f"{info['label']} ({info['rows']} rows in {info['files']} file(s); {commits})"


def headline(report: dict) -> str:
    c = report["counts"]
    shown = ", ".join(f"{n} {v}" for v, n in c.items() if n or v in ("worse", "same"))
    return f"{shown}: " + ("REGRESSION" if c["worse"] else "no regression")


def _gates(g: dict) -> str:
    parts = {"status": "status (missing cell, ok -> oom/error)",
             "memory": f"memory per view > max({g['memory_pct']:g}%, {g['memory_floor_mib']:g} MiB)",
             "time": f"step time > {g['time_pct']:g}% with its interval clear of 1 ({100 * g['confidence']:.3g}% "
                     f"over {g.get('cells_timed', 1)} cells: {100 * g.get('per_cell_confidence', 0):.3g}% each)",
             "digest": "parameter digest for the same seed and config"}
    return "; ".join(v for k, v in parts.items() if k in g["checks"]) or "none"


def _head(report: dict) -> list[str]:
    hw = report["hardware"]
    cls = hwclass.describe(report["baseline"]["class_fields"])
    if hw["same_class"]:
        hw_line = f"hardware class: {cls} (both)"
    else:
        diffs = "; ".join(f"{hwclass.LABELS.get(k, k)} {a!r} vs {b!r}" for k, a, b in hw["differences"])
        hw_line = f"DIFFERENT hardware classes, compared on request (--allow-different-hardware): {diffs}"
    return [f"baseline:  {_side(report['baseline'])}", f"candidate: {_side(report['candidate'])}", hw_line,
            f"gates: {_gates(report['gates'])}", *[f"note: {n}" for n in report["notes"]]]


def text(report: dict) -> str:
    rows = [list(COLUMNS)] + [cells(r) for r in report["rows"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = [f"zo2bench compare: {headline(report)}", *_head(report), ""]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _md_table(rows: list[dict]) -> list[str]:
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---:" if c == "change" else "---" for c in COLUMNS) + "|"]
    for r in rows:
        c = cells(r)
        c[5] = f"**{c[5]}**" if c[5] == "worse" else c[5]
        out.append("| " + " | ".join(esc(x) for x in c) + " |")
    return out


def markdown(report: dict, title: str = "zo2bench compare") -> str:
    changed = [r for r in report["rows"] if r["verdict"] != "same"]
    same = [r for r in report["rows"] if r["verdict"] == "same"]
    lines = [f"### {title}: {headline(report)}", ""] + [f"- {line}" for line in _head(report)] + [""]
    if changed:
        lines += _md_table(changed) + [""]
    if same:
        lines += [f"<details><summary>{len(same)} rows the same</summary>", "", *_md_table(same), "", "</details>", ""]
    return "\n".join(lines)
