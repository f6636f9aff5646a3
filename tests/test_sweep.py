"""The sweep: rows appended as cells end, resumption, retries, --force, crash / oom / infeasible handling,
torn rows, the closing table, export.

Most tests replace the cell launcher with a fake that writes the row a real cell would (fast); the launcher
itself is tested with real subprocesses: one crashing cell, one timed-out cell and one real opt-tiny cell.
Process lifecycle (kill -9, the lock, a failing zygote) is in test_sweep_lifecycle.py.
"""
from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from zo2bench import catalog, results
from zo2bench.cli import main as cli_main
from zo2bench.config import RunConfig
from zo2bench.errors import UserError
from zo2bench.experiments import launch, runner
from zo2bench.experiments.runner import Machine, feasibility
from zo2bench.experiments.spec import load

GiB = 2**30
CPU_BOX = Machine("test-box", {"test": True}, host_total_bytes=64 * GiB, cuda_available=False)
GPU_BOX = Machine("test-gpu", {"test": True}, host_total_bytes=512 * GiB, cuda_available=True,
                  gpu_total_bytes={0: 80 * GiB})

SERIES = """
[base]
device = "{device}"
[steps]
measured = 2
[grid]
models = ["opt-350m", "opt-125m", "opt-1.3b"]
modes = ["zo2", "mezo"]
dtypes = ["fp16"]
batches = [1]
seqs = [64]
"""


def experiment(tmp_path: Path, device: str = "cpu", name: str = "toy"):
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(SERIES.format(device=device)))
    return load(path)


class FakeLauncher:
    """Stands in for runner.launch_cell: writes the row a cell would, with a chosen status per (model, mode)."""

    def __init__(self, outcomes=None, crash=(), interrupt_at=None, finished_utc=None):
        self.outcomes, self.crash, self.interrupt_at = outcomes or {}, set(crash), interrupt_at
        self.finished_utc = finished_utc
        self.calls: list[str] = []

    def __call__(self, payload, timeout_s, on_event, zygote=None, pass_fds=()):
        header = payload["header"]
        cell = header["cell"]
        if len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt
        self.calls.append(header["key"])
        on_event({"event": "phase", "phase": "build"})
        on_event({"event": "step", "i": 1, "total": 2, "warmup": False, "seconds": 0.01})
        if (cell["model"], cell["mode"]) in self.crash:
            return {"returncode": 1, "timed_out": False, "done": None,
                    "stderr_tail": "Traceback (most recent call last):\nRuntimeError: boom"}
        status = self.outcomes.get((cell["model"], cell["mode"]), "ok")
        fields = {"oom": {"allocated_bytes": 79 * GiB}} if status == "oom" else \
            {"step_time_s": {"n": 2, "median": 0.5}, "tokens_per_s": 128.0, "steps": [{"seconds": 0.5}] * 2}
        results.append_row(payload["results_file"], results.sweep_row(header, status, None,
                                                                      finished_utc=self.finished_utc, **fields))
        return {"returncode": 0, "timed_out": False, "done": {"status": status, "reason": None}, "stderr_tail": ""}


def rows_of(tmp_path: Path, series: str = "toy") -> list[dict]:
    return [r for f in results.sweep_files(tmp_path / "results", series) for r in results.read_rows(f)]


def run_sweep(tmp_path, exp, machine=CPU_BOX, **kw):
    return runner.sweep(exp, results_dir=tmp_path / "results", machine=machine, stream=io.StringIO(), **kw)


# -- feasibility from exact byte counts ----------------------------------------------------------

def test_infeasible_from_exact_bytes():
    n = catalog.get("opt-1.3b").n_params()
    small_host = Machine("m", {}, host_total_bytes=2 * GiB, cuda_available=True, gpu_total_bytes={0: 80 * GiB})
    verdict = feasibility(RunConfig(model="opt-1.3b", mode="zo2", dtype="fp16", device="cuda:0"), n, small_host)
    assert verdict["need_bytes"] == n * 2 and verdict["limit_bytes"] == 2 * GiB and verdict["where"] == "host"
    assert f"{n:,} params x 2 B = {2 * n:,} B" in verdict["reason"] and f"{2 * GiB:,} B" in verdict["reason"]
    # mezo keeps the weights on the GPU: 2.6 GB fits 80 GiB
    assert feasibility(RunConfig(mode="mezo", dtype="fp16", device="cuda:0"), n, small_host) is None
    # fo-adamw: 16 B/param on the device; OPT-6.7B needs 107 GB > 80 GiB
    n67 = catalog.get("opt-6.7b").n_params()
    verdict = feasibility(RunConfig(mode="fo-adamw", dtype="fp16", device="cuda:0"), n67, GPU_BOX)
    assert verdict["need_bytes"] == 16 * n67 and verdict["where"] == "cuda:0" and "16 B/param" in verdict["reason"]
    # on the CPU every mode holds its weights in host memory: fp32 is 4 B/param
    assert feasibility(RunConfig(mode="mezo", dtype="fp32", device="cpu"), n, small_host)["need_bytes"] == 4 * n


def test_infeasible_cells_are_recorded_without_running(tmp_path, monkeypatch):
    fake = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake)
    # room for opt-125m and opt-350m in fp16 (0.25 GB, 0.66 GB), not for opt-1.3b (2.6 GB)
    box = Machine("small", {}, host_total_bytes=GiB, cuda_available=False)
    summary = run_sweep(tmp_path, experiment(tmp_path), machine=box)
    assert summary["counts"] == {"ok": 4, "infeasible": 2}
    assert not any("opt-1.3b" in k for k in fake.calls)
    rows = [r for r in rows_of(tmp_path) if r["status"] == "infeasible"]
    assert {r["cell"]["model"] for r in rows} == {"opt-1.3b"}
    assert "> 1,073,741,824 B" in rows[0]["reason"] and rows[0]["feasibility"]["limit_bytes"] == GiB


# -- resumption and --force ----------------------------------------------------------------------

def test_resume_skips_recorded_cells_and_force_runs_them_again(tmp_path, monkeypatch):
    exp = experiment(tmp_path)
    fake = FakeLauncher(interrupt_at=2)
    monkeypatch.setattr(runner, "launch_cell", fake)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tmp_path, exp)
    done = {r["key"] for r in rows_of(tmp_path)}
    assert done == set(fake.calls) and len(done) == 2  # what finished before the interrupt is kept

    fake2 = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake2)
    summary = run_sweep(tmp_path, exp)
    assert len(fake2.calls) == 4 and not set(fake2.calls) & done
    assert summary["counts"] == {"recorded": 2, "ok": 4}
    assert len({r["key"] for r in rows_of(tmp_path)}) == 6 and len(rows_of(tmp_path)) == 6

    fake3 = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake3)
    assert run_sweep(tmp_path, exp)["counts"] == {"recorded": 6}
    assert fake3.calls == []
    assert run_sweep(tmp_path, exp, force=True)["counts"] == {"ok": 6}
    assert len(fake3.calls) == 6 and len(rows_of(tmp_path)) == 12
    files = results.sweep_files(tmp_path / "results", "toy", "test-box")
    assert len(files) == 3  # one file per sweep run that recorded something


def test_redo_before_reruns_older_cells_and_resumes(tmp_path, monkeypatch):
    """A re-run of everything recorded before a time can be split: the second part skips what the first redid."""
    exp = experiment(tmp_path)
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher(finished_utc="2026-01-01T00:00:00Z"))
    assert run_sweep(tmp_path, exp)["counts"] == {"ok": 6}
    new = "2026-06-01T00:00:00Z"
    first = FakeLauncher(interrupt_at=2, finished_utc=new)
    monkeypatch.setattr(runner, "launch_cell", first)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tmp_path, exp, redo_before="2026-03-01T00:00:00Z")
    second = FakeLauncher(finished_utc=new)
    monkeypatch.setattr(runner, "launch_cell", second)
    assert run_sweep(tmp_path, exp, redo_before="2026-03-01T00:00:00Z")["counts"] == {"recorded": 2, "ok": 4}
    assert not set(first.calls) & set(second.calls) and len(set(first.calls) | set(second.calls)) == 6
    latest = results.latest_rows(rows_of(tmp_path))
    assert {r["finished_utc"] for r in latest} == {new}


def test_a_crashing_cell_is_an_error_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    fake = FakeLauncher(crash={("opt-125m", "zo2")})
    monkeypatch.setattr(runner, "launch_cell", fake)
    summary = run_sweep(tmp_path, experiment(tmp_path))
    assert summary["counts"] == {"error": 1, "ok": 5} and len(fake.calls) == 6
    err = [r for r in rows_of(tmp_path) if r["status"] == "error"]
    assert len(err) == 1 and "exited with status 1" in err[0]["reason"] and "RuntimeError: boom" in err[0]["reason"]


def test_oom_skips_larger_models_of_the_same_group(tmp_path, monkeypatch):
    fake = FakeLauncher(outcomes={("opt-350m", "mezo"): "oom"})
    monkeypatch.setattr(runner, "launch_cell", fake)
    summary = run_sweep(tmp_path, experiment(tmp_path, device="cuda"), machine=GPU_BOX)
    assert summary["counts"] == {"ok": 4, "oom": 1, "skipped": 1}
    by = {(r["cell"]["model"], r["cell"]["mode"]): r for r in rows_of(tmp_path)}
    skipped = by[("opt-1.3b", "mezo")]
    assert skipped["status"] == "skipped"
    assert "opt-350m" in skipped["reason"] and "out of GPU memory" in skipped["reason"]
    assert by[("opt-1.3b", "zo2")]["status"] == "ok"  # another mode: tried
    assert by[("opt-350m", "mezo")]["oom"]["allocated_bytes"] == 79 * GiB
    assert ("opt-1.3b", "mezo") not in [tuple(k.split(":")[2:4]) for k in fake.calls]


def test_a_recorded_oom_still_spares_larger_models_after_a_restart(tmp_path, monkeypatch):
    exp = experiment(tmp_path, device="cuda")
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher(outcomes={("opt-350m", "mezo"): "oom"}))
    run_sweep(tmp_path, exp, machine=GPU_BOX, only_models=["opt-125m", "opt-350m"])
    fake = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake)
    summary = run_sweep(tmp_path, exp, machine=GPU_BOX)
    assert summary["counts"] == {"recorded": 4, "ok": 1, "skipped": 1}


def test_a_gpu_profile_is_refused_on_a_machine_without_one(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher())
    with pytest.raises(UserError, match="runs on cuda.*no CUDA GPU.*try --profile cpu"):
        run_sweep(tmp_path, experiment(tmp_path, device="cuda"), machine=CPU_BOX)
    assert rows_of(tmp_path) == []


def test_dry_run_writes_nothing(tmp_path, monkeypatch):
    fake = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake)
    summary = run_sweep(tmp_path, experiment(tmp_path), dry_run=True)
    assert summary["counts"] == {"would run": 6} and fake.calls == [] and summary["file"] is None
    assert not (tmp_path / "results").exists()


# -- failures are retried; the exit status counts every cell -------------------------------------

def cli_sweep(tmp_path, exp, *extra) -> int:
    return cli_main(["sweep", exp.file, "--results-dir", str(tmp_path / "results"), "--allow-dirty", *extra])


def test_failed_cells_are_retried_on_resume_and_the_exit_status_counts_every_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "detect_machine", lambda: CPU_BOX)
    exp = experiment(tmp_path)
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher(crash={("opt-125m", "zo2")},
                                                            outcomes={("opt-350m", "mezo"): "nonfinite"}))
    assert cli_sweep(tmp_path, exp) == 1
    assert "6 of 6 cells recorded: 4 ok, 2 failed (1 error, 1 nonfinite); this run: 4 ok, 1 error, 1 nonfinite" \
        in capsys.readouterr().err

    idle = FakeLauncher()  # --no-retry runs nothing, and still fails: the failures are what the series holds
    monkeypatch.setattr(runner, "launch_cell", idle)
    assert cli_sweep(tmp_path, exp, "--no-retry") == 1 and idle.calls == []
    assert "6 of 6 cells recorded: 4 ok, 2 failed (1 error, 1 nonfinite); this run: nothing run" in \
        capsys.readouterr().err

    again = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", again)
    assert cli_sweep(tmp_path, exp) == 0
    assert sorted(k.split(":")[2:4] for k in again.calls) == [["opt-125m", "zo2"], ["opt-350m", "mezo"]]
    err = capsys.readouterr().err
    assert "2 of them failed before" in err and "opt-125m zo2 fp16 b1 s64: ok (was error)" in err
    assert "6 of 6 cells recorded: 6 ok; this run: 2 ok (2 retried)" in err

    monkeypatch.setattr(runner, "launch_cell", FakeLauncher(interrupt_at=0))
    assert cli_sweep(tmp_path, exp) == 0  # nothing left to retry: nothing runs
    assert [r["status"] for r in results.latest_rows(rows_of(tmp_path))] == ["ok"] * 6


def test_a_timed_out_cell_is_retried(tmp_path, monkeypatch):
    """A timeout is recorded as `error` with why; on resume it runs again like any failure."""
    exp = experiment(tmp_path)

    def timing_out(payload, timeout_s, on_event, zygote=None, pass_fds=()):
        return {"returncode": -9, "timed_out": True, "done": None, "stderr_tail": "", "zygote_failed": None}

    monkeypatch.setattr(runner, "launch_cell", timing_out)
    summary = run_sweep(tmp_path, exp, only_models=["opt-125m"])
    assert summary["failed"] == 2 and summary["held"] == {"error": 2}
    assert all("timed out after 3600 s" in r["reason"] for r in rows_of(tmp_path))
    fake = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake)
    summary = run_sweep(tmp_path, exp, only_models=["opt-125m"])
    assert len(fake.calls) == 2 and summary["retried"] == 2 and summary["failed"] == 0


def test_a_skip_stands_only_while_its_out_of_memory_does(tmp_path, monkeypatch):
    exp = experiment(tmp_path, device="cuda")
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher(outcomes={("opt-350m", "mezo"): "oom"}))
    assert run_sweep(tmp_path, exp, machine=GPU_BOX)["held"] == {"ok": 4, "oom": 1, "skipped": 1}
    fake = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake)  # the oom stands: so does the skip
    assert run_sweep(tmp_path, exp, machine=GPU_BOX)["counts"] == {"recorded": 6} and fake.calls == []
    # opt-350m mezo fits after all (say, a fix); the skip of opt-1.3b mezo followed from it, so it runs now
    run_sweep(tmp_path, exp, machine=GPU_BOX, only_models=["opt-350m"], force=True)
    fake = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake)
    summary = run_sweep(tmp_path, exp, machine=GPU_BOX)
    assert [k.split(":")[2:4] for k in fake.calls] == [["opt-1.3b", "mezo"]]
    assert summary["held"] == {"ok": 6} and summary["retried"] == 1


# -- the table of what was measured --------------------------------------------------------------

def _row(status, views=None, median=None, tokens=None, model="opt-125m"):
    return {"status": status, "cell": {"mode": "zo2", "model": model, "dtype": "fp16", "batch": 1, "seq": 64},
            "repeats": 1, "memory": {"views": views}, "step_time_s": {"median": median}, "tokens_per_s": tokens}


def test_the_closing_table_shows_each_view_and_never_a_zero_for_what_was_not_measured():
    from zo2bench.experiments.progress import measured_table, render_table

    MiB = 2**20
    gpu = {"build": {"torch_peak_allocated_bytes": 100 * MiB, "nvml_process_peak_bytes": 600 * MiB,
                     "nvml_device_peak_bytes": 700 * MiB, "host_rss_peak_bytes": 900 * MiB,
                     "pinned_peak_bytes": 160 * MiB},
           "measured": {"torch_peak_allocated_bytes": 250 * MiB, "nvml_process_peak_bytes": 1040 * MiB,
                        "nvml_device_peak_bytes": 1530 * MiB, "host_rss_peak_bytes": 1190 * MiB,
                        "pinned_peak_bytes": 160 * MiB, "phase": "measured"}}
    cpu = {"measured": {"torch_peak_allocated_bytes": None, "nvml_process_peak_bytes": None,
                        "nvml_device_peak_bytes": None, "host_rss_peak_bytes": 316 * MiB, "pinned_peak_bytes": 0}}
    df = measured_table([_row("ok", gpu, 0.0174, 117449.6), _row("ok", cpu, 0.336, 95.2, "opt-tiny"),
                         _row("error")])
    g, c, e = df.to_dict("records")
    assert (g["GPU torch MiB"], g["GPU proc MiB"], g["GPU dev MiB"]) == ("250.0", "1,040.0", "1,530.0")
    assert (g["host RSS MiB"], g["pinned MiB"]) == ("1,190.0", "160.0")
    assert (g["step ms"], g["tokens/s"]) == ("17.4", "117,450")
    assert (c["GPU torch MiB"], c["GPU proc MiB"], c["GPU dev MiB"]) == ("n/m", "n/m", "n/m")
    assert (c["host RSS MiB"], c["pinned MiB"]) == ("316.0", "0.0")  # nothing pinned on a CPU: measured zero
    assert all(e[k] == "" for k in ("GPU torch MiB", "host RSS MiB", "step ms", "tokens/s"))
    text = render_table([_row("ok", gpu, 0.0174, 117449.6)])
    assert text.splitlines()[0].split()[:6] == ["mode", "model", "dtype", "batch", "seq", "status"]


def test_a_sweep_ends_with_the_table_and_where_the_rows_are(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher(outcomes={("opt-1.3b", "zo2"): "oom"}))
    stream = io.StringIO()
    summary = runner.sweep(experiment(tmp_path), results_dir=tmp_path / "results", machine=CPU_BOX, stream=stream)
    text = stream.getvalue()
    table = text[text.index("what each cell measured"):]
    assert "step ms" in table and "tokens/s" in table and table.count(" opt-") == 6
    ok_line = next(line for line in table.splitlines() if "opt-125m" in line and " ok" in line).split()
    assert ok_line[-2:] == ["500.0", "128"]  # the fake's 0.5 s median and 128 tokens/s
    assert next(line for line in table.splitlines() if " oom" in line).split()[-1] == "oom"  # no figures
    last = text.strip().splitlines()[-1]
    assert last.startswith("zo2bench sweep: toy/default: 6 of 6 cells recorded: 5 ok, 1 oom; this run:")
    assert f"rows in {tmp_path / 'results' / 'toy' / 'test-box'}/ (this run: {Path(summary['file']).name})" in last


# -- the row store -------------------------------------------------------------------------------

def test_sweep_files_in_the_order_they_were_written(tmp_path):
    d = tmp_path / "s" / "m"
    d.mkdir(parents=True)
    names = ["20260101T000000Z.jsonl", "20260101T000000Z-2.jsonl", "20260101T000000Z-10.jsonl",
             "20260101T000001Z.jsonl"]
    for name in reversed(names):
        (d / name).touch()
    assert [p.name for p in results.sweep_files(tmp_path, "s", "m")] == names
    path = d / "x.jsonl"
    assert results.new_sweep_file(tmp_path, "s", "m").name.endswith(".jsonl") and not path.exists()


def test_resume_sets_a_torn_last_line_aside(tmp_path, monkeypatch, capsys):
    exp = experiment(tmp_path)
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher(interrupt_at=2))
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tmp_path, exp)
    (path,) = results.sweep_files(tmp_path / "results", "toy")
    whole = path.read_bytes()
    torn = b'{"key": "toy:default:opt-1.3b:zo2:fp16:b1:s64:r0", "sta'
    with open(path, "ab") as f:
        f.write(torn)  # a machine that died mid-write
    assert len(results.read_rows(path)) == 2 and "incomplete row" in capsys.readouterr().err

    assert cli_main(["results", "list", "--results-dir", str(tmp_path / "results")]) == 0
    assert capsys.readouterr().err.count("incomplete row") == 1  # once, not once per read

    monkeypatch.setattr(runner, "launch_cell", FakeLauncher())
    stream = io.StringIO()
    runner.sweep(exp, results_dir=tmp_path / "results", machine=CPU_BOX, stream=stream)
    assert path.read_bytes() == whole  # whole again, the rows of before untouched
    (side,) = path.parent.glob(f"{path.name}.torn-*")
    assert side.read_bytes() == torn
    assert f"set aside {len(torn)} bytes of torn row(s) (line 3) in {side.name}" in stream.getvalue()
    rows_of(tmp_path)
    assert "incomplete" not in capsys.readouterr().err
    assert len(results.latest_rows(rows_of(tmp_path))) == 6


def test_set_aside_torn_lines_in_the_middle_and_a_lost_newline(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"key": "a"}\n{"key": "b", "lo\n{"key": "c"}\n[1, 2]\n{"key": "d"}')
    torn = results.set_aside_torn(path)
    assert torn["lines"] == [2, 4] and torn["side_file"].read_bytes() == b'{"key": "b", "lo\n[1, 2]\n'
    assert path.read_bytes() == b'{"key": "a"}\n{"key": "c"}\n{"key": "d"}\n'
    assert results.set_aside_torn(path) is None and [r["key"] for r in results.read_rows(path)] == ["a", "c", "d"]
    assert not list(tmp_path.glob(".rows.jsonl.*.tmp"))

# -- more of the row store -------------------------------------------------------------------------------

def test_append_row_survives_a_torn_last_line(tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    results.append_row(path, {"key": "a", "loss": float("nan")})
    with open(path, "a") as f:
        f.write('{"key": "torn", "lo')  # a machine that died mid-write
    results.append_row(path, {"key": "b"})
    assert [r["key"] for r in results.read_rows(path)] == ["a", "b"]
    assert results.read_rows(path)[0]["loss"] is None  # NaN is not JSON
    assert "incomplete row" in capsys.readouterr().err


def test_export_csv_one_row_per_cell(tmp_path, monkeypatch):
    exp = experiment(tmp_path)
    monkeypatch.setattr(runner, "launch_cell", FakeLauncher())
    run_sweep(tmp_path, exp)
    run_sweep(tmp_path, exp, force=True)  # every cell twice on disk; the export keeps the latest
    out = tmp_path / "toy.csv"
    assert cli_main(["results", "export", "--results-dir", str(tmp_path / "results"), "--series", "toy",
                     "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 6 and df["key"].is_unique
    assert {"status", "model", "step_time_median_ms", "seq", "tokens_per_s"} <= set(df.columns)
    assert cli_main(["results", "export", "--results-dir", str(tmp_path / "results"), "--all-rows",
                     "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 12


def test_export_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["results", "export", "--results-dir", str(tmp_path / "none")]) == 2
    assert "no sweep results" in capsys.readouterr().err
    results.append_row(tmp_path / "r" / "toy" / "m" / "x.jsonl", {"key": "k", "status": "ok"})
    code = cli_main(["results", "export", "--results-dir", str(tmp_path / "r"), "--format", "parquet",
                     "--out", str(tmp_path / "x.parquet")])
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert code == 2 and "needs pyarrow" in capsys.readouterr().err
    else:
        assert code == 0


# -- real subprocesses ---------------------------------------------------------------------------

def _payload(tmp_path, header) -> dict:
    return {"header": header, "results_file": str(tmp_path / "rows.jsonl"), "fingerprint": {},
            "event_prefix": launch.EVENT_PREFIX}


def test_launch_cell_reports_a_real_crash_with_its_stderr(tmp_path):
    outcome = launch.launch_cell(_payload(tmp_path, {}), timeout_s=120, on_event=lambda e: None)  # no config
    assert outcome["returncode"] != 0 and outcome["done"] is None
    assert "KeyError" in outcome["stderr_tail"]


@pytest.mark.parametrize("forked", [False, True])
def test_launch_cell_kills_a_cell_past_its_timeout(tmp_path, forked):
    header = {"config": RunConfig(model="opt-tiny", device="cpu", steps=10**6, seq=32).as_dict(), "cell": {"repeat": 0},
              "repeats": 1, "key": "k"}
    zygote = launch.Zygote(tmp_path / "zygote.log") if forked else None
    try:
        outcome = launch.launch_cell(_payload(tmp_path, header), timeout_s=0.3, on_event=lambda e: None, zygote=zygote)
    finally:
        if zygote:
            zygote.close()
    assert outcome["timed_out"] and outcome["done"] is None


@pytest.mark.parametrize("launch", ["zygote", "interpreter"])
def test_a_real_tiny_cell_end_to_end(tmp_path, monkeypatch, launch):
    if launch == "interpreter":  # where fork is missing, each cell starts a new interpreter
        monkeypatch.delattr(runner.os, "fork")
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent("""
        [base]
        device = "cpu"
        [steps]
        measured = 2
        [grid]
        models = ["opt-tiny"]
        modes = ["zo2"]
        dtypes = ["fp32"]
        batches = [1]
        seqs = [32]
    """))
    events = io.StringIO()
    summary = runner.sweep(load(path), results_dir=tmp_path / "results", stream=events)
    assert summary["counts"] == {"ok": 1}, events.getvalue()
    (row,) = rows_of(tmp_path, "tiny")
    assert row["status"] == "ok" and row["key"] == "tiny:default:opt-tiny:zo2:fp32:b1:s32:r0"
    assert row["step_time_s"]["n"] == 2 and row["step_time_s"]["median"] > 0
    assert row["tokens_per_s"] == pytest.approx(32 / row["step_time_s"]["median"])
    assert len(row["losses"]) == 2 and all(isinstance(x, float) for x in row["losses"])
    assert row["model"]["n_params"] == catalog.get("opt-tiny").n_params() == row["n_params"]
    assert row["build_seconds"] > 0 and len(row["final_params_sha256"]) == 64
    assert row["probes"]["phases"]["measured"]["host_rss_bytes"]["peak"] > 0
    # the engine's pinned-bytes count reaches the probes; on CPU nothing is pinned
    assert row["probes"]["phases"]["measured"]["pinned_bytes"] == {"peak": 0, "mean": 0}
    assert "pinned_bytes" not in row["probes"]["not_measured"] and row["probes"]["sample_rate_hz"] > 0
    assert row["memory"]["views"]["measured"]["pinned_peak_bytes"] == 0
    assert row["memory"]["views"]["measured"]["host_rss_peak_bytes"] > 0
    assert row["fingerprint"] and row["machine_id"] == summary["machine_id"]
    assert "1/1 opt-tiny zo2 fp32 b1 s32: ok" in events.getvalue()
    json.dumps(row)  # plain JSON all through
