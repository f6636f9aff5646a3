"""Regression checks (zo2bench/regression): the gates and verdicts of `compare`, the hardware class,
the stored baselines, the A/B of two commits in a temporary git repository, and the session's decisions.

The rows are built here with the sweep row's schema and written by results.append_row; the A/B's real
path (`zo2bench sweep` at two commits) produces real rows too.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zo2bench import results, stats
from zo2bench.cli import main
from zo2bench.config import RunConfig
from zo2bench.errors import UserError
from zo2bench.regression import ab, baseline, hwclass, session
from zo2bench.regression.compare import compare, load_side
from zo2bench.regression.render import render

GiB, MiB = 2**30, 2**20
REPO = Path(__file__).resolve().parents[1]
H100 = {"hostname": "vm-1", "cpu_model": "Intel(R) Xeon(R) Processor", "cpu_logical_count": 16, "torch": "2.11.0+cu130",
        "torch_cuda_version": "13.0", "transformers": "5.17.0", "git_commit": "a" * 40, "git_dirty": False,
        "gpu": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "gpu_uuid": "GPU-1", "gpu_bus_id": "00000000:00:06.0",
        "gpu_driver_version": "580.159.04", "pcie_gen_current": 1, "pcie_gen_max": 5, "pcie_width_current": 16,
        "pcie_width_max": 16}
MEM = {"torch_peak_allocated_bytes": 10 * GiB, "torch_peak_reserved_bytes": 11 * GiB,
       "nvml_process_peak_bytes": 12 * GiB, "host_rss_peak_bytes": 3 * GiB, "pinned_peak_bytes": 2 * GiB}


def row(model="opt-125m", mode="zo2", batch=1, seq=2048, repeat=0, status="ok", steps=(0.1,) * 10, mem=None,
        digest="d" * 64, fp=None, series="regression", **config) -> dict:
    """One sweep row as the runner and a cell write it (results.py's schema)."""
    cfg = RunConfig(model=model, mode=mode, batch=batch, seq=seq, dtype="fp16", steps=len(steps), warmup=2,
                    device="cuda:0", **config)
    key = f"{series}:gpu:{model}:{mode}:fp16:b{batch}:s{seq}:r{repeat}"
    head = {"series": series, "profile": "gpu", "key": key, "cell": {"model": model, "mode": mode, "dtype": "fp16",
            "batch": batch, "seq": seq, "repeat": repeat}, "repeats": 5, "config": cfg.as_dict(),
            "n_params": 125_239_296, "machine_id": "h100-80gb-hbm3", "run_id": f"run{repeat}"}
    if status != "ok":
        return results.sweep_row(head, status, f"{status}: out of GPU memory running {model}", fingerprint=fp or H100,
                                 started_utc="2026-11-26T10:00:00Z", finished_utc="2026-11-26T10:00:01Z", wall_s=1.0)
    mem = {**MEM, **(mem or {})}
    views = {ph: {"phase": ph, **{k: (v if ph == "measured" else v // 2) for k, v in mem.items()}}
             for ph in ("build", "warmup", "measured")}
    step_list = [{"step": i, "warmup": True, "loss_plus": 1.0, "loss_minus": 1.0, "seconds": 0.5} for i in range(2)]
    step_list += [{"step": i + 2, "warmup": False, "loss_plus": 1.0, "loss_minus": 1.0, "seconds": s}
                  for i, s in enumerate(steps)]
    return results.sweep_row(head, "ok", None, fingerprint=fp or H100, started_utc="2026-11-26T10:00:00Z",
                             finished_utc="2026-11-26T10:00:05Z", wall_s=5.0,
                             step_time_s={**stats.summarize(steps), "repeat": repeat, "repeats": 5},
                             tokens_per_s=batch * seq / stats.median(steps), steps=step_list,
                             memory={"torch": {}, "views": views}, final_params_sha256=digest)


def write(path: Path, rows: list[dict]) -> Path:
    for r in rows:
        results.append_row(path, r)
    return path


def runs(center: float, n_runs=5, n_steps=15, step_sd=0.002, run_sd=0.0, seed=0) -> list[list[float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n_runs):
        m = center * (1 + rng.gauss(0, run_sd))
        out.append([max(1e-4, m * (1 + rng.gauss(0, step_sd))) for _ in range(n_steps)])
    return out


def side(tmp_path, name, cells: list[list[dict]]) -> Path:
    """Rows as a sweep writes them: one file per run of the series."""
    d = tmp_path / name
    for i, rows in enumerate(cells):
        write(d / f"run{i}.jsonl", rows)
    return d


def cmp(tmp_path, base_rows, cand_rows, **kw) -> dict:
    b = write(tmp_path / "base.jsonl", base_rows)
    c = write(tmp_path / "cand.jsonl", cand_rows)
    return compare(load_side(b), load_side(c), **kw)


def verdict(report: dict, metric: str, cell: str | None = None) -> str:
    hits = [r for r in report["rows"] if r["metric"] == metric and (cell is None or r["cell"].startswith(cell))]
    assert len(hits) == 1, (metric, [(r["cell"], r["metric"]) for r in report["rows"]])
    return hits[0]["verdict"]


# -- memory ------------------------------------------------------------------------------------------

def test_memory_3_percent_more_fails_and_1_percent_passes(tmp_path):
    base = [row()]
    worse = cmp(tmp_path, base, [row(mem={"torch_peak_allocated_bytes": int(10 * GiB * 1.03)})])
    assert verdict(worse, "memory: torch allocated") == "worse" and worse["exit_status"] == 1
    assert verdict(worse, "memory: torch reserved") == "same"
    (tmp_path / "cand.jsonl").unlink()
    (tmp_path / "base.jsonl").unlink()
    fine = cmp(tmp_path, base, [row(mem={"torch_peak_allocated_bytes": int(10 * GiB * 1.01)})])
    assert verdict(fine, "memory: torch allocated") == "same" and fine["exit_status"] == 0


def test_memory_floor_of_64_mib_and_less_memory_is_better(tmp_path):
    small = {"pinned_peak_bytes": 500 * MiB}
    report = cmp(tmp_path, [row(mem=small)], [row(mem={"pinned_peak_bytes": 560 * MiB,  # +12%, under 64 MiB
                                                         "host_rss_peak_bytes": 2 * GiB})])  # -1 GiB
    assert verdict(report, "memory: pinned host") == "same"
    assert verdict(report, "memory: host RSS") == "better" and report["exit_status"] == 0


# -- time --------------------------------------------------------------------------------------------

def test_a_10_percent_slowdown_with_tight_repeats_fails(tmp_path):
    b = [row(repeat=i, steps=r) for i, r in enumerate(runs(0.100, seed=1))]
    c = [row(repeat=i, steps=r) for i, r in enumerate(runs(0.110, seed=2))]
    report = cmp(tmp_path, b, c)
    assert verdict(report, "step time") == "worse" and report["exit_status"] == 1
    t = next(r for r in report["rows"] if r["metric"] == "step time")
    assert t["change"] == pytest.approx(0.10, abs=0.01)
    assert t["detail"]["ratio_ci"]["low"] > 1.05 and t["detail"]["baseline_noise"]["runs"] == 5
    assert "baseline steps 0.2%, runs 0.0% (5 x 15)" in t["note"]  # says how noisy each side was
    assert report["rows"][0] is t  # worse rows first


def test_a_10_percent_difference_inside_wide_noise_is_the_same(tmp_path):
    # The runs disagree by up to 40% among themselves (process to process), as mezo's did on the H100.
    spread = [0.08, 0.12, 0.09, 0.11, 0.10]
    b = [row(repeat=i, steps=[m * (1 + 0.01 * (k % 3)) for k in range(15)]) for i, m in enumerate(spread)]
    c = [row(repeat=i, steps=[1.1 * m * (1 + 0.01 * (k % 3)) for k in range(15)]) for i, m in enumerate(spread[::-1])]
    report = cmp(tmp_path, b, c)
    t = next(r for r in report["rows"] if r["metric"] == "step time")
    assert t["change"] == pytest.approx(0.10) and t["verdict"] == "same" and "inside the noise" in t["note"]
    assert t["detail"]["ratio_ci"]["low"] < 1 < t["detail"]["ratio_ci"]["high"]
    assert "runs 15.8%" in t["note"] and report["exit_status"] == 0


def test_the_interval_is_shared_out_over_the_cells(tmp_path):
    # The same slowdown, clear at 95% for one cell, is not clear at 1 - 0.05/12 for one cell of twelve.
    spread = [0.100, 0.104, 0.096, 0.102, 0.098]  # Welch: p = 0.02 for a 6% slowdown
    mk = lambda model, f: [row(model, repeat=i, steps=[f * m] * 5) for i, m in enumerate(spread)]
    one = cmp(tmp_path, mk("opt-125m", 1.0), mk("opt-125m", 1.06))
    assert verdict(one, "step time") == "worse"
    models = [f"m{i}" for i in range(12)]
    for f in tmp_path.glob("*.jsonl"):
        f.unlink()
    twelve = cmp(tmp_path, [r for m in models for r in mk(m, 1.0)],
                 [r for m in models for r in mk(m, 1.06 if m == "m0" else 1.0)])
    assert twelve["gates"]["cells_timed"] == 12
    assert twelve["gates"]["per_cell_confidence"] == pytest.approx(1 - 0.05 / 12)
    assert verdict(twelve, "step time", "m0 ") == "same"


def test_a_clear_speedup_is_better_and_too_few_steps_is_not_comparable(tmp_path):
    report = cmp(tmp_path, [row(repeat=i, steps=r) for i, r in enumerate(runs(0.1))],
                 [row(repeat=i, steps=r) for i, r in enumerate(runs(0.08, seed=5))])
    assert verdict(report, "step time") == "better"
    (tmp_path / "base.jsonl").unlink()
    (tmp_path / "cand.jsonl").unlink()
    report = cmp(tmp_path, [row(steps=(0.1, 0.1))], [row(steps=(0.2, 0.2))])
    assert verdict(report, "step time") == "not comparable" and report["exit_status"] == 0


def test_runs_are_pooled_across_files_and_the_last_row_of_a_file_counts(tmp_path):
    b = side(tmp_path, "b", [[row(steps=r)] for r in runs(0.1, n_runs=3)])  # three rounds, key r0 each
    c = side(tmp_path, "c", [[row(status="oom"), row(steps=r)] for r in runs(0.1, n_runs=3, seed=9)])
    report = compare(load_side(b), load_side(c))
    t = next(r for r in report["rows"] if r["metric"] == "step time")
    assert t["detail"]["baseline_noise"]["runs"] == 3 and t["detail"]["candidate_noise"]["runs"] == 3
    assert not any(r["metric"] == "status" for r in report["rows"])  # the oom rows were superseded


# -- hardware class ----------------------------------------------------------------------------------

def test_two_vms_of_one_class_compare_and_another_driver_is_refused(tmp_path, capsys):
    other_vm = {**H100, "hostname": "vm-2", "gpu_uuid": "GPU-2", "gpu_bus_id": "x", "pcie_gen_current": 5}
    assert hwclass.hardware_class(other_vm) == hwclass.hardware_class(H100)
    b = write(tmp_path / "b.jsonl", [row()])
    c = write(tmp_path / "c.jsonl", [row(fp={**other_vm, "gpu_driver_version": "575.57.08", "gpu_count": 8})])
    with pytest.raises(UserError, match="GPU count 1 vs 8; driver '580.159.04' vs '575.57.08'"):
        compare(load_side(b), load_side(c))
    assert main(["compare", str(b), str(c)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zo2bench: error: ") and "driver" in err and len(err.strip().splitlines()) == 1
    report = compare(load_side(b), load_side(c), allow_different_hardware=True)
    assert report["rows"] and all(r.get("different_hardware") and "[different hardware]" in r["note"]
                                  for r in report["rows"])
    assert "DIFFERENT hardware" in render(report, "text")


def test_class_names_for_gpu_and_cpu_machines():
    assert hwclass.class_name(hwclass.hardware_class(H100)) == \
        "h100-80gb-hbm3-x1-pcie5x16-driver580.159.04-torch2.11.0-cu130-cuda13.0"
    cpu = {"cpu_model": "AMD EPYC 7763 64-Core Processor", "cpu_logical_count": 2, "torch": "2.13.0+cpu", "gpu": None}
    assert hwclass.class_name(hwclass.hardware_class(cpu)) == "cpu-amd-epyc-7763-64-core-2c-torch2.13.0-cpu"
    diffs = hwclass.differences(hwclass.hardware_class(cpu), hwclass.hardware_class(H100))
    assert diffs[0] == ("cpu_model", "AMD EPYC 7763 64-Core Processor", None) and ("gpu", None, H100["gpu"]) in diffs


# -- its own kinds of regression -----------------------------------------------------------------------

def test_changed_digest_missing_cell_and_new_oom_are_each_reported(tmp_path):
    base = [row("opt-125m"), row("opt-1.3b"), row("opt-125m", mode="mezo"), row("opt-125m", mode="fo-adamw")]
    cand = [row("opt-125m", digest="e" * 64), row("opt-125m", mode="mezo", status="oom"),
            row("opt-125m", mode="fo-adamw"), row("opt-350m")]
    report = cmp(tmp_path, base, cand)
    assert verdict(report, "params digest", "opt-125m zo2") == "worse"
    assert verdict(report, "cell", "opt-1.3b zo2") == "worse"
    assert verdict(report, "status", "opt-125m mezo") == "worse"
    assert verdict(report, "cell", "opt-350m zo2") == "not comparable"  # new: nothing to compare with
    assert verdict(report, "params digest", "opt-125m fo-adamw") == "same"
    oom = next(r for r in report["rows"] if r["metric"] == "status")
    assert "ok x1" in oom["baseline"] and "oom x1" in oom["candidate"] and "out of GPU memory" in oom["note"]
    assert report["counts"]["worse"] == 3 and report["exit_status"] == 1
    assert [r["verdict"] for r in report["rows"]][:3] == ["worse"] * 3


def test_digest_rules_follow_what_the_baseline_shows_about_determinism(tmp_path):
    report = cmp(tmp_path, [row(repeat=0, digest="a" * 64), row(repeat=1, digest="b" * 64)],
                 [row(repeat=0, digest="c" * 64)])
    assert verdict(report, "params digest") == "not comparable"  # the baseline's own runs disagree
    for f in tmp_path.glob("*.jsonl"):
        f.unlink()
    report = cmp(tmp_path, [row()], [row(prefetch=0, digest="c" * 64)])
    assert verdict(report, "params digest") == "not comparable"  # another configuration
    assert "prefetch 1 -> 0" in next(r for r in report["rows"] if r["metric"] == "step time")["note"]


# -- output and the command ----------------------------------------------------------------------------

def test_markdown_and_json_outputs_parse(tmp_path):
    report = cmp(tmp_path, [row(), row("opt-1.3b")], [row(digest="e" * 64, mem={"host_rss_peak_bytes": 4 * GiB})])
    doc = json.loads(render(report, "json"))
    assert doc["counts"]["worse"] == 3 and doc["exit_status"] == 1 and doc["rows"][0]["verdict"] == "worse"
    md = render(report, "markdown")
    assert md.startswith("### zo2bench compare: 3 worse")
    tables = [ln for ln in md.splitlines() if ln.startswith("|")]
    widths = {len(ln.replace("\\|", "").split("|")) for ln in tables}
    assert len(widths) == 1 and widths.pop() == 9  # 7 columns: every line of both tables has them all
    assert sum(set(ln) <= set("|-: ") for ln in tables) == 2  # a header separator per table
    assert md.index("**worse**") < md.index("<details>") < md.index("| same |")  # unchanged rows folded
    assert "**worse**" in md and "4,096.0 MiB" in md
    text = render(report, "text")
    lines = text.splitlines()
    assert lines[0] == "zo2bench compare: 3 worse, 5 same: REGRESSION"
    header = next(i for i, ln in enumerate(lines) if ln.startswith("cell "))
    assert lines[header].split() == ["cell", "metric", "baseline", "candidate", "change", "verdict", "note"]
    assert " worse " in lines[header + 1] and " same " in lines[-1]


def test_the_compare_command_exits_0_1_or_2(tmp_path, capsys):
    b = write(tmp_path / "b.jsonl", [row()])
    same = write(tmp_path / "same.jsonl", [row()])
    worse = write(tmp_path / "worse.jsonl", [row(mem={"nvml_process_peak_bytes": 13 * GiB})])
    assert main(["compare", str(b), str(same)]) == 0
    assert main(["compare", str(b), str(worse), "--format", "markdown", "--out", str(tmp_path / "c.md")]) == 1
    assert "GPU process (NVML)" in (tmp_path / "c.md").read_text()
    assert main(["compare", str(b), str(worse), "--memory-pct", "10"]) == 0  # 1 GiB of 12 is under 10%
    assert main(["compare", str(b), str(worse), "--gates", "status,time"]) == 0  # memory shown, not gated
    assert "not gated" in capsys.readouterr().out
    assert main(["compare", str(b), str(tmp_path / "nothing")]) == 2
    assert main(["compare", str(b), str(b), "--gates", "speed"]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(b)]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "unknown gate 'speed'" in err and "no sweep rows" in err


# -- baselines ---------------------------------------------------------------------------------------

def test_a_baseline_stores_rows_as_written_and_names_its_clean_commit(tmp_path):
    cls = hwclass.hardware_class(H100)
    run = side(tmp_path, "run", [[row(), row("opt-1.3b")]])
    d = baseline.baseline_dir(tmp_path / "results" / "baselines", cls)
    assert baseline.load_meta(d) is None
    meta = baseline.store(run, d, cls, source="test")
    assert meta["commit"] == "a" * 40 and meta["row_count"] == 2 and baseline.load_meta(d)["rows"] == meta["rows"]
    assert (d / meta["rows"][0]).read_bytes() == (run / "run0.jsonl").read_bytes()
    assert results.sweep_files(tmp_path / "results") == []  # not taken for a series by `zo2bench results`
    dirty = side(tmp_path, "dirty", [[row(fp={**H100, "git_dirty": True})]])
    with pytest.raises(UserError, match="uncommitted changes"):
        baseline.store(dirty, d, cls)
    other = side(tmp_path, "other", [[row(fp={**H100, "torch": "2.12.0+cu130"})]])
    with pytest.raises(UserError, match="hardware class"):
        baseline.store(other, d, cls)
    assert baseline.load_meta(d)["commit"] == "a" * 40  # a refused store leaves the old baseline whole


# -- the session's decisions (series and microbenchmarks injected) ------------------------------------

def _session(tmp_path, rows, **opts):
    def series(o, out, gate_time=True):
        return side(tmp_path, f"run-{len(list(tmp_path.glob('run-*')))}", [rows]), None

    def microbench(o, storage, out, compare_to_stored, save_as, gate=True, ab_base=None):
        return {"status": "ok", "note": f"stored={compare_to_stored} save={save_as}"}

    o = session.Options(baselines=str(tmp_path / "baselines"), out=str(tmp_path / "out"), **opts)
    return session.run(o, series=series, microbench=microbench, fp=H100)


def test_the_session_stores_a_first_baseline_then_fails_on_a_regression(tmp_path, capsys):
    assert _session(tmp_path, [row()]) == 0
    assert "none for this hardware class" in capsys.readouterr().err
    d = tmp_path / "baselines" / hwclass.class_name(hwclass.hardware_class(H100))
    assert baseline.load_meta(d)["row_count"] == 1
    assert _session(tmp_path, [row(digest="f" * 64)]) == 1
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "REGRESSION in the baseline comparison" in summary and "params digest" in summary
    assert json.loads((tmp_path / "out" / "baseline-comparison.json").read_text())["counts"]["worse"] == 1
    assert _session(tmp_path, [row(digest="f" * 64)], update_baseline=True) == 0  # accepted as the new baseline
    assert _session(tmp_path, [row(digest="f" * 64)]) == 0


def test_the_session_stores_no_first_baseline_over_a_failed_ab(tmp_path, capsys):
    def series(o, out, gate_time=True):
        d = side(tmp_path, "head", [[row(digest="f" * 64)]])
        return d, compare(load_side(side(tmp_path, "base", [[row()]])), load_side(d))

    o = session.Options(baselines=str(tmp_path / "baselines"), out=str(tmp_path / "out"), base="main")
    assert session.run(o, series=series, microbench=lambda *a, **k: {"status": "skipped"}, fp=H100) == 1
    assert "not stored as the baseline: the A/B against the base found a regression" in capsys.readouterr().err
    assert not (tmp_path / "baselines").exists()
    assert "REGRESSION in the A/B" in (tmp_path / "out" / "summary.md").read_text()


def test_the_session_runs_an_ab_against_the_baselines_commit_by_default(tmp_path, capsys, monkeypatch):
    """With a GPU class and git at hand, the time check is an A/B against the stored baseline's commit (and so
    are the microbenchmarks); --no-ab, or a commit git does not have, compares time with the stored rows."""
    repo = _temp_repo(tmp_path)
    _git(repo, "commit", "-qm", "one", "--allow-empty")
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    fp = {**H100, "git_commit": sha}
    seen = []

    def series(o, out, gate_time=True):
        seen.append(o.base)
        d = side(tmp_path, f"run-{len(seen)}", [[row(fp=fp)]])
        ab_report = {**compare(load_side(d), load_side(d)), "ab": {"base": {"commit": o.base}}}
        return d, (None if o.base is None else ab_report)

    def microbench(o, storage, out, compare_to_stored, save_as, gate=True, ab_base=None):
        seen.append(("microbench", ab_base))
        return {"status": "ok", "note": ""}

    def go(**opts):
        o = session.Options(baselines=str(tmp_path / "baselines"), out=str(tmp_path / "out"), **opts)
        return session.run(o, series=series, microbench=microbench, fp=fp)

    assert go() == 0 and seen == [None, ("microbench", None)]  # no baseline yet: a plain run, stored
    seen.clear()
    assert go() == 0 and seen == [sha, ("microbench", sha)]
    assert f"A/B against the stored baseline's commit {sha[:12]}" in capsys.readouterr().err
    seen.clear()
    assert go(ab=False) == 0 and seen == [None, ("microbench", None)]
    seen.clear()
    fp["git_dirty"] = True  # uncommitted changes: the working tree runs, not an A/B of commits
    assert go() == 0 and seen == [None, ("microbench", None)]
    assert "uncommitted changes: no A/B" in capsys.readouterr().err
    fp["git_dirty"] = False
    seen.clear()
    monkeypatch.chdir(tmp_path)  # not a git repository: no A/B, said so
    assert go() == 0 and seen == [None, ("microbench", None)]
    assert "no A/B against the baseline's commit" in capsys.readouterr().err
    assert session.parse(["--no-ab"]).ab is False and session.parse([]).ab is True


MICRO = "import time\n\ndef test_sleep(benchmark):\n    benchmark.pedantic(time.sleep, args=({s},), rounds=5)\n"


def test_after_an_ab_the_microbenchmarks_are_compared_with_the_base_commits_run_in_the_same_job(tmp_path, monkeypatch):
    repo = _temp_repo(tmp_path)
    (repo / "benchmarks").mkdir()
    shas = []
    for seconds in (0.002, 0.002, 0.006):  # base, an unchanged head, a head three times slower
        (repo / "benchmarks" / "test_microbench.py").write_text(MICRO.format(s=seconds))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", f"sleep {seconds}", "--allow-empty")
        shas.append(subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                   text=True).stdout.strip())
    monkeypatch.chdir(repo)
    verdicts = []
    for head in shas[1:]:
        _git(repo, "checkout", "-q", head)
        out = tmp_path / f"out-{head[:6]}"
        out.mkdir()
        mb = session.run_microbench(session.Options(microbench_fail="median:50%"), tmp_path / "stored", out,
                                    compare_to_stored=False, save_as=None, ab_base=shas[0])
        verdicts.append(mb["status"])
        assert json.loads((out / "microbench.json").read_text())["benchmarks"][0]["name"] == "test_sleep"
    assert verdicts == ["ok", "regressed"]
    assert not (tmp_path / "stored").exists()  # the stored microbenchmarks are neither read nor written


def test_the_session_refuses_to_update_a_baseline_from_a_dirty_tree(tmp_path):
    dirty = {**H100, "git_dirty": True}
    o = session.Options(baselines=str(tmp_path / "b"), out=str(tmp_path / "o"), update_baseline=True)
    with pytest.raises(UserError, match="uncommitted changes"):
        session.run(o, series=None, microbench=None, fp=dirty)


# -- A/B of two commits ---------------------------------------------------------------------------------

STUB = '''import json, os, sys, pathlib
SPEED = {speed}
sys.path.insert(0, {repo!r})
from zo2bench import results
from tests.test_regression import row, H100
out = pathlib.Path(sys.argv[1])
with open(sys.argv[2], "a") as log:
    log.write(sys.argv[3] + " " + sys.argv[4] + "\\n")
fp = dict(H100, git_commit=os.environ["ZO2BENCH_GIT_COMMIT"], git_dirty=os.environ["ZO2BENCH_GIT_DIRTY"] == "1")
results.append_row(out / "regression" / "h100" / "rows.jsonl",
                   row(steps=[SPEED * (1 + 0.001 * i) for i in range(10)], fp=fp))
'''


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _temp_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    (repo / "experiments").mkdir(parents=True)
    shutil.copy(REPO / "experiments" / "regression.toml", repo / "experiments")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "t")
    return repo


def test_ab_runs_each_commit_in_its_own_worktree_interleaved(tmp_path):
    repo = _temp_repo(tmp_path)
    for speed, msg in ((0.100, "fast"), (0.120, "slower")):
        (repo / "series.py").write_text(STUB.format(speed=speed, repo=str(REPO)))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", msg)
    log = tmp_path / "order.log"
    command = (sys.executable, "series.py", "{results_dir}", str(log), "{side}", "{round}")
    run = ab.run_ab(repo, base="HEAD~1", head="HEAD", profile="cpu", out_dir=tmp_path / "ab", command=command)
    assert log.read_text().split("\n")[:-1] == ["base 1", "head 1", "base 2", "head 2", "base 3", "head 3"]
    assert run["plan"]["rounds"] == 3  # the cpu profile's steps.repeats
    report = compare(load_side(run["base_dir"]), load_side(run["head_dir"]))
    assert verdict(report, "step time") == "worse" and report["exit_status"] == 1
    commits = {s: [c["commit"] for c in report[k]["commits"]] for s, k in (("base", "baseline"), ("head", "candidate"))}
    assert commits == {s: [run["plan"][s]["commit"]] for s in ("base", "head")} and commits["base"] != commits["head"]
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # both removed
    with pytest.raises(UserError, match="not a commit"):
        ab.run_ab(repo, base="no-such-ref", profile="cpu", command=command)


def test_the_ab_command_refuses_bad_input_before_it_checks_anything_out(capsys):
    assert main(["ab", "--base", "no-such-ref-anywhere"]) == 2
    assert main(["ab", "--base", "HEAD", "--rounds", "0"]) == 2
    err = capsys.readouterr().err
    assert "'no-such-ref-anywhere' is not a commit" in err and "--rounds must be >= 1" in err


def test_one_repeat_file_keeps_the_series_and_changes_only_the_repeats(tmp_path):
    from zo2bench.experiments.spec import load

    path, _ = ab.one_repeat_file(REPO / "experiments" / "regression.toml", tmp_path)
    orig, derived = load(REPO / "experiments" / "regression.toml"), load(path)
    assert derived.name == orig.name == "regression"
    for p in orig.profiles:
        assert orig.profiles[p]["steps"]["repeats"] > 1 and derived.profiles[p]["steps"]["repeats"] == 1
        assert [c.key for c in derived.cells(p)] == [c.key for c in orig.cells(p) if c.repeat == 0]
        assert {k: v for k, v in derived.profiles[p].items() if k != "steps"} == \
               {k: v for k, v in orig.profiles[p].items() if k != "steps"}


def test_ab_default_command_is_the_real_sweep(tmp_path):
    """The real path end to end: `zo2bench sweep` from each commit's worktree, real rows, compared."""
    assert ab.DEFAULT_COMMAND[:4] == ("{python}", "-m", "zo2bench", "sweep")
    repo = _temp_repo(tmp_path)
    shutil.copytree(REPO / "zo2bench", repo / "zo2bench", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "experiments" / "tiny.toml").write_text(
        'cell_timeout_s = 120\n[base]\ndevice = "cpu"\n[steps]\nwarmup = 0\nmeasured = 3\nrepeats = 1\n'
        '[grid]\nmodels = ["opt-tiny"]\nmodes = ["mezo"]\ndtypes = ["fp32"]\nbatches = [1]\nseqs = [8]\n')
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "one")
    (repo / "README").write_text("a second commit\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "two")
    run = ab.run_ab(repo, base="HEAD~1", experiment="experiments/tiny.toml", out_dir=tmp_path / "ab")
    b, h = load_side(run["base_dir"]), load_side(run["head_dir"])
    assert [r["status"] for r in b.rows + h.rows] == ["ok", "ok"]
    assert h.rows[0]["fingerprint"]["git_commit"] == run["plan"]["head"]["commit"]
    report = compare(b, h)
    assert verdict(report, "params digest") == "same"  # the same code and seed: the same trajectory
