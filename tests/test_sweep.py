"""The sweep: rows appended as cells end, resumption, --force, crash / oom / infeasible handling, export.

Most tests replace the cell launcher with a fake that writes the row a real cell would (fast); the launcher
itself is tested with real subprocesses: one crashing cell, one timed-out cell and one real opt-tiny cell.
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
from zo2bench.experiments import runner
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

    def __call__(self, payload, timeout_s, on_event, zygote=None):
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
    assert by[("opt-1.3b", "mezo")]["status"] == "skipped"
    assert "opt-350m" in by[("opt-1.3b", "mezo")]["reason"] and "out of GPU memory" in by[("opt-1.3b", "mezo")]["reason"]
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
    with pytest.raises(UserError, match="cuda:0.*try --profile cpu"):
        run_sweep(tmp_path, experiment(tmp_path, device="cuda"), machine=CPU_BOX)
    assert rows_of(tmp_path) == []


def test_dry_run_writes_nothing(tmp_path, monkeypatch):
    fake = FakeLauncher()
    monkeypatch.setattr(runner, "launch_cell", fake)
    summary = run_sweep(tmp_path, experiment(tmp_path), dry_run=True)
    assert summary["counts"] == {"would run": 6} and fake.calls == [] and summary["file"] is None
    assert not (tmp_path / "results").exists()


# -- the row store -------------------------------------------------------------------------------

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
    assert {"status", "cell.model", "step_time_s.median", "config.seq", "tokens_per_s"} <= set(df.columns)
    assert cli_main(["results", "export", "--results-dir", str(tmp_path / "results"), "--all",
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
            "event_prefix": runner.EVENT_PREFIX}


def test_launch_cell_reports_a_real_crash_with_its_stderr(tmp_path):
    outcome = runner.launch_cell(_payload(tmp_path, {}), timeout_s=120, on_event=lambda e: None)  # no config
    assert outcome["returncode"] != 0 and outcome["done"] is None
    assert "KeyError" in outcome["stderr_tail"]


@pytest.mark.parametrize("forked", [False, True])
def test_launch_cell_kills_a_cell_past_its_timeout(tmp_path, forked):
    header = {"config": RunConfig(model="opt-tiny", device="cpu", steps=10**6, seq=32).as_dict(), "cell": {"repeat": 0},
              "repeats": 1, "key": "k"}
    zygote = runner.Zygote() if forked else None
    try:
        outcome = runner.launch_cell(_payload(tmp_path, header), timeout_s=0.3, on_event=lambda e: None, zygote=zygote)
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
