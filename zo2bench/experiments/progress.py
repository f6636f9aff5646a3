"""What a sweep shows on stderr: a progress line while cells run, and at the end a table of what they measured.

    progress = Progress(total=6, to_run=4)         # one redrawn line on a terminal, a line per change on a log
    progress.start(1, "opt-125m zo2 fp16 b1 s2048"); progress.event({"event": "phase", "phase": "build"})
    progress.finish(1, "opt-125m zo2 fp16 b1 s2048", "ok")
    print(measured_table(rows).to_string(index=False))   # one line per cell: memory views, step time, tokens/s

In the table a figure the cell did not measure (no GPU, no NVML) reads "n/m"; a cell that did not run to
its end (error, oom, skipped, infeasible) leaves its figures blank. Memory in MiB (2**20 bytes), each the
peak over the cell's phases (build, warm-up, measured steps).
"""
from __future__ import annotations

import sys
import time

MiB = 2**20
NOT_MEASURED = "n/m"
# (column, field of the row's memory.views[phase]): the three GPU views, then the host's
MEMORY_COLUMNS = [("GPU torch MiB", "torch_peak_allocated_bytes"),  # the allocator's peak allocated
                  ("GPU proc MiB", "nvml_process_peak_bytes"),  # NVML, this process
                  ("GPU dev MiB", "nvml_device_peak_bytes"),  # NVML, the whole device
                  ("host RSS MiB", "host_rss_peak_bytes"),
                  ("pinned MiB", "pinned_peak_bytes")]  # page-locked host memory the engine holds
LEGEND = ("peaks over build, warm-up and measured steps: GPU torch = allocator, GPU proc / GPU dev = NVML for "
          "the process / the device; MiB = 2**20 bytes; step ms = median of the measured steps; n/m = not measured")


def _hms(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """One redrawn line on a terminal; on a log (nox, CI) a line per change, steps at most every few seconds."""

    def __init__(self, total: int, to_run: int, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total, self.to_run = total, to_run
        self.durations: list[float] = []
        self.index, self.name, self.detail, self.cell_start, self.last_print = 0, "", "", 0.0, 0.0

    def eta(self) -> str:
        if not self.durations:
            return "?"
        left = sum(self.durations) / len(self.durations) * max(self.to_run - len(self.durations), 0)
        return _hms(left - (time.monotonic() - self.cell_start if self.cell_start else 0))

    def _line(self) -> str:
        filled = int(20 * (self.index - 1) / max(self.total, 1))
        bar = "#" * filled + "." * (20 - filled)
        elapsed = _hms(time.monotonic() - self.cell_start) if self.cell_start else "-"
        return f"[{bar}] {self.index}/{self.total} {self.name} | {self.detail} | {elapsed} | ETA {self.eta()}"

    def _show(self, force: bool = False) -> None:
        if self.tty:
            self.stream.write("\r" + self._line()[:200] + "\x1b[K")
        elif force or time.monotonic() - self.last_print >= 5.0:
            self.stream.write(self._line() + "\n")
            self.last_print = time.monotonic()
        self.stream.flush()

    def start(self, index: int, name: str) -> None:
        self.index, self.name, self.detail, self.cell_start = index, name, "starting", time.monotonic()
        self._show(force=True)

    def event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "phase":
            self.detail = event.get("phase", "")
            self._show(force=True)
            return
        if kind == "step":
            last = f" ({event['seconds']:.2f} s)" if isinstance(event.get("seconds"), (int, float)) else ""
            what = "warm-up" if event.get("warmup") else "step"
            self.detail = f"{what} {event.get('i')}/{event.get('total')}{last}"
        self._show()

    def note(self, text: str) -> None:
        """A line of its own (a warning, a change of launch path), clear of the redrawn progress line."""
        self.stream.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def finish(self, index: int, name: str, status: str, note: str = "", ran: bool = True) -> None:
        if ran and self.cell_start:
            self.durations.append(time.monotonic() - self.cell_start)
        self.cell_start = 0.0
        self.note(f"{index}/{self.total} {name}: {status}" + (f" ({note})" if note else ""))


# -- the table at the end ----------------------------------------------------------------------------

def _peak(views, field: str):
    """The largest value of `field` over the phases; None when no phase measured it."""
    values = [v.get(field) for v in (views or {}).values() if isinstance(v, dict)]
    values = [v for v in values if isinstance(v, (int, float))]
    return max(values) if values else None


def _cell_figures(row: dict) -> dict:
    views = (row.get("memory") or {}).get("views")
    measured = row.get("status") == "ok" or isinstance(views, dict) and any(isinstance(v, dict) for v in views.values())
    out = {}
    for column, field in MEMORY_COLUMNS:
        value = _peak(views, field)
        out[column] = f"{value / MiB:,.1f}" if value is not None else NOT_MEASURED if measured else ""
    if row.get("distributed") and views is None:  # the ranks' allocator peaks: the largest rank's
        value = _peak((row.get("memory") or {}).get("torch"), "torch_peak_allocated_bytes")
        if value is not None:
            out[MEMORY_COLUMNS[0][0]] = f"{value / MiB:,.1f}"
    median = (row.get("step_time_s") or {}).get("median")
    tokens = row.get("tokens_per_s")
    out["step ms"] = f"{median * 1e3:,.1f}" if median else NOT_MEASURED if row.get("status") == "ok" else ""
    out["tokens/s"] = f"{tokens:,.0f}" if tokens else NOT_MEASURED if row.get("status") == "ok" else ""
    return out


def measured_table(rows: list[dict]):
    """One line per row (cell): its axes and status, the peak of each memory view, median step time, tokens/s."""
    import pandas as pd

    lines = []
    for row in rows:
        cell = row.get("cell") or {}
        head = {"mode": cell.get("mode"), "model": cell.get("model"), "dtype": cell.get("dtype"),
                "batch": cell.get("batch"), "seq": cell.get("seq")}
        if cell.get("parallel"):  # a gpu_scaling cell: its GPUs and strategy
            head["parallel"] = cell["parallel"]
        if (row.get("repeats") or 1) > 1:
            head["repeat"] = cell.get("repeat")
        lines.append({**head, "status": row.get("status"), **_cell_figures(row)})
    return pd.DataFrame(lines)


def render_table(rows: list[dict]) -> str:
    """measured_table as text, aligned by pandas; a repeat column only where a cell has several repeats."""
    df = measured_table(rows)
    if df.empty:
        return "(no cells)"
    return "\n".join(line.rstrip() for line in df.fillna("").to_string(index=False).splitlines())
