"""The table a convergence sweep ends with: one line per cell, its curve's end and its test metric.

    print(render_table(rows))      # rows: the latest row of each cell (runner._sweep)
"""
from __future__ import annotations

LEGEND = ("dev = the task's primary dev metric (classification accuracy, generation token accuracy, QA F1) before "
          "training -> at the last step; test = the same metric on the test split with the final weights; "
          "train s = wall time of the training intervals (evaluation excluded); n/m = not measured")


def primary(task: str | None) -> str | None:
    from zo2bench.tasks.examples import PRIMARY_METRIC

    return PRIMARY_METRIC.get(task or "")


def _fmt(x, spec: str = ".3f") -> str:
    return "" if x is None else format(x, spec)


def line(row: dict) -> dict:
    cell = row.get("cell") or {}
    ft = row.get("finetune") or {}
    metric = primary(cell.get("task"))
    curve = ft.get("dev_curve") or []
    out = {"model": cell.get("model"), "task": cell.get("task"), "k": cell.get("k"), "mode": cell.get("mode"),
           "lr": cell.get("lr"), "eps": cell.get("eps"), "seed": (row.get("config") or {}).get("seed"),
           "status": row.get("status")}
    if row.get("status") == "ok" and curve:
        div = ft.get("diverged_at_step")
        out["steps"] = ft.get("steps_run") if div is None else f"diverged@{div}"
        out["dev"] = f"{_fmt(curve[0].get(metric))} -> {_fmt(curve[-1].get(metric))}"
        out["test"] = _fmt((ft.get("test") or {}).get(metric))
        out["train s"] = _fmt(curve[-1].get("train_s"), ".1f")
        e = curve[-1].get("energy_j")
        out["GPU J"] = _fmt(e, ".0f") if e is not None else "n/m"
    return out


def render_table(rows: list[dict]) -> str:
    import pandas as pd

    df = pd.DataFrame([line(r) for r in rows])
    if df.empty:
        return "(no cells)"
    return "\n".join(s.rstrip() for s in df.astype(object).fillna("").to_string(index=False).splitlines())
