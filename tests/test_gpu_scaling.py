"""Issue 12's remaining pieces on the CPU: the host-memory check before pinning (run, bench-step, the sweep),
bench-step on 2 gloo ranks, distributed cells in the sweep (grid.parallel), the floors per configuration,
and the report's scaling section."""
from __future__ import annotations

import io
import json
import textwrap

import pytest

from zo2bench import catalog, results
from zo2bench.analysis import load as loader
from zo2bench.bench.scaling_floors import dist_floors
from zo2bench.cli import main as cli
from zo2bench.config import RunConfig
from zo2bench.errors import UserError
from zo2bench.experiments import runner
from zo2bench.experiments.runner import Machine
from zo2bench.experiments.spec import load, parallel_fields
from zo2bench.probes import hostmem
from zo2bench.report import scaling_section

GiB = 2**30
TINY = ["--model", "opt-tiny", "--device", "cpu", "--dtype", "fp32", "--batch", "4", "--seq", "16"]


# -- host memory ---------------------------------------------------------------------------------

def test_host_need_counts_one_copy_per_weight_group_and_one_per_rank_without_sharding():
    spec = catalog.get("opt-13b")
    blocks = spec.layers * spec.block_params() * 2
    one = hostmem.host_need(RunConfig(model="opt-13b", mode="zo2", dtype="fp16", device="cuda:0"), spec)
    assert one["bytes"] == blocks
    assert hostmem.host_need(RunConfig(mode="mezo", dtype="fp16", device="cuda:0"), spec)["bytes"] == 0
    dist = RunConfig(model="opt-13b", mode="zo2", dtype="fp16", device="cuda", nproc_per_node=4)
    shared = hostmem.host_need(dist, spec, ranks_per_host=4, weight_shard=4)
    assert blocks <= shared["bytes"] < blocks + spec.layers * 4 * 4096  # one copy, padded to whole pages
    assert hostmem.host_need(dist, spec, ranks_per_host=4, weight_shard=2)["bytes"] == 2 * \
        hostmem.host_need(dist, spec, ranks_per_host=2, weight_shard=2)["bytes"]   # two groups, two copies
    per_rank = hostmem.host_need(dist.replace(weight_shard=1), spec, ranks_per_host=4, weight_shard=1)
    assert per_rank["bytes"] == 4 * blocks and "4 ranks" in per_rank["what"]


def test_available_host_bytes_takes_the_override_then_the_smaller_of_cgroup_and_memavailable(tmp_path):
    assert hostmem.available_host_bytes({hostmem.OVERRIDE_ENV: "12345"})["bytes"] == 12345
    with pytest.raises(UserError, match="expected a number of bytes"):
        hostmem.available_host_bytes({hostmem.OVERRIDE_ENV: "lots"})
    (tmp_path / "memory.max").write_text("1048576\n")
    (tmp_path / "memory.current").write_text("48576\n")
    got = hostmem.available_host_bytes({}, cgroup_root=tmp_path)
    assert got == {"bytes": 1_000_000, "source": "cgroup memory.max - memory.current", "limit_bytes": 1048576}
    (tmp_path / "memory.max").write_text("max\n")   # no limit: MemAvailable
    assert hostmem.available_host_bytes({}, cgroup_root=tmp_path)["source"].startswith("psutil")


def test_host_feasibility_names_both_figures():
    cfg = RunConfig(model="opt-1.3b", mode="zo2", dtype="fp16", device="cuda:0")
    v = hostmem.host_feasibility(cfg, available={"bytes": GiB, "source": "test"})
    need = catalog.get("opt-1.3b").layers * catalog.get("opt-1.3b").block_params() * 2
    assert v["need_bytes"] == need and v["available_bytes"] == GiB and v["where"] == "host"
    assert f"{need:,} B" in v["reason"] and f"{GiB:,} B" in v["reason"] and "(test)" in v["reason"]
    assert hostmem.host_feasibility(cfg, available={"bytes": 100 * GiB, "source": "test"}) is None


@pytest.mark.parametrize("argv", [["run"], ["bench-step", "--steps", "1", "--warmup", "0"],
                                  ["run", "--nproc-per-node", "2"]])
def test_run_and_bench_step_record_infeasible_and_exit_2(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.setenv(hostmem.OVERRIDE_ENV, "1000")
    out = tmp_path / "r.json"
    assert cli([*argv, *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("zo2bench: error: infeasible: host memory: needs ") and "1,000 B" in err[-1]
    rec = json.loads(out.read_text())
    assert rec["status"] == "infeasible" and rec["feasibility"]["available_bytes"] == 1000
    assert rec["feasibility"]["need_bytes"] > 1000 and rec["config"]["model"] == "opt-tiny"


# -- sweep cells ---------------------------------------------------------------------------------

SERIES = """
[base]
device = "{device}"
[steps]
measured = 2
[grid]
models = ["opt-tiny"]
modes = ["zo2"]
dtypes = ["fp32"]
batches = [4]
seqs = [16]
parallel = {parallel}
"""


def series(tmp_path, parallel='["single", "pert2+shard2"]', device="cpu"):
    path = tmp_path / "scal.toml"
    path.write_text(textwrap.dedent(SERIES.format(device=device, parallel=parallel)))
    return load(path)


def test_parallel_axis_sets_the_degrees_and_joins_the_key(tmp_path):
    assert parallel_fields("dp2xpert2+shard4") == {"nproc_per_node": 4, "dp": 2, "pert": 2, "weight_shard": 4}
    assert parallel_fields("pert2") == {"nproc_per_node": 2, "dp": 1, "pert": 2, "weight_shard": 1}
    cells = series(tmp_path).cells("default")
    assert [c.key.rsplit(":", 1)[-1] for c in cells] == ["parallel=single", "parallel=pert2+shard2"]
    assert cells[1].config.nproc_per_node == 2 and cells[1].config.weight_shard == 2
    assert cells[0].group != cells[1].group   # an out-of-memory of one strategy does not skip another's cells


@pytest.mark.parametrize("bad, says", [('["dp2pert2"]', "expected strategies"), ('["dp3"]', "does not divide"),
                                       ('["pert2+shard3"]', "must divide")])
def test_bad_parallel_values_are_refused_with_the_file(tmp_path, bad, says):
    with pytest.raises(UserError, match=says) as e:
        series(tmp_path, bad)
    assert "scal.toml" in str(e.value)


def test_cells_needing_more_gpus_or_host_memory_are_infeasible_without_running(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "launch_cell", lambda *a, **k: calls.append(a) or {})
    one_gpu = Machine("m", {}, host_total_bytes=64 * GiB, cuda_available=True, gpu_total_bytes={0: 80 * GiB},
                      host_available_bytes=1000)
    exp = series(tmp_path, '["single", "dp2xpert2+shard4"]', device="cuda")
    summary = runner.sweep(exp, results_dir=tmp_path / "res", machine=one_gpu, stream=io.StringIO())
    assert summary["counts"] == {"infeasible": 2} and not calls
    rows = results.read_rows(summary["file"])
    by = {r["cell"]["parallel"]: r for r in rows}
    assert "4 ranks, one a GPU, but this machine has 1 GPU" in by["dp2xpert2+shard4"]["reason"]
    assert by["single"]["feasibility"]["available_bytes"] == 1000 and "host memory" in by["single"]["reason"]


def test_a_distributed_cell_runs_as_one_launch_and_its_row_is_merged(tmp_path):
    exp = series(tmp_path, '["pert2+shard2"]')
    box = Machine("box", {}, host_total_bytes=64 * GiB, cuda_available=False)
    summary = runner.sweep(exp, results_dir=tmp_path / "res", machine=box, stream=io.StringIO())
    (row,) = results.read_rows(summary["file"])
    assert row["status"] == "ok", row["reason"]
    d = row["distributed"]
    assert d["strategy"] == "pert2+shard2" and d["world_size"] == 2 and len(d["ranks"]) == 2
    assert row["fingerprint"]["distributed"]["world_size"] == 2
    assert all(s["seconds"] == max(s["rank_seconds"]) for s in row["steps"])
    assert row["tokens_per_s"] > 0 and row["key"].endswith(":parallel=pert2+shard2")


# -- bench-step on 2 ranks -----------------------------------------------------------------------

def test_bench_step_on_two_gloo_ranks_writes_one_merged_record(tmp_path, capfd):
    out = tmp_path / "b.json"
    argv = ["bench-step", *TINY, "--steps", "2", "--warmup", "1", "--nproc-per-node", "2",
            "--results-dir", str(tmp_path / "res"), "--out", str(out)]
    assert cli(argv) == 0
    b = json.loads(out.read_text())
    d = b["distributed"]
    assert d["world_size"] == 2 and d["strategy"] == "pert2+shard2" and d["backend"] == "gloo"
    assert [r["rank"] for r in d["ranks"]] == [0, 1] and all("memory" in r and "device" in r for r in d["ranks"])
    assert b["fingerprint"]["distributed"]["ranks"][1]["device"] == "cpu"
    measured = [s for s in b["steps"] if not s["warmup"]]
    assert b["step_s"]["n"] == 2 and all(s["seconds"] == max(s["rank_seconds"]) for s in measured)
    df = b["distributed_floors"]
    assert df["source"] == "../shared/reference/multi-gpu.md" and df["pcie_s"] == 0.0  # gloo: no PCIe
    assert b["rates"]["h2d_total_gb_per_s"]["2"] == 104.0
    assert "distributed" in capfd.readouterr().out   # rank 0 prints the table


# -- floors per configuration --------------------------------------------------------------------

@pytest.mark.parametrize("model, n, w1, wn, resident", [("opt-13b", 2, 0.48, 0.27, 0.03),
                                                        ("opt-13b", 4, 0.69, 0.22, 0.05),
                                                        ("opt-175b", 4, 9.56, 3.06, 0.67)])
def test_floors_match_the_planning_table_of_docs_distributed(model, n, w1, wn, resident):
    spec = catalog.get(model)
    dims = lambda w: {"world_size": n, "ranks_per_host": n, "weight_shard": w}  # noqa: E731
    assert dist_floors(spec, "fp16", "zo2", dims(1))["transfer_s"] == pytest.approx(w1, abs=0.006)
    assert dist_floors(spec, "fp16", "zo2", dims(n))["transfer_s"] == pytest.approx(wn, abs=0.006)
    assert dist_floors(spec, "fp16", "mezo", dims(n))["transfer_s"] == pytest.approx(resident, abs=0.006)
    three = dist_floors(spec, "fp16", "zo2", {"world_size": 3, "ranks_per_host": 3, "weight_shard": 3})
    assert three["floor_s"] is None and three["missing"]   # no measured rate for 3 GPUs at once


# -- the report's scaling section ----------------------------------------------------------------

def _row(parallel, gpus, step, machine="box-1"):
    cfg = RunConfig(model="opt-13b", mode="zo2", dtype="fp16", batch=8, seq=2048, device="cuda")
    if gpus > 1:
        cfg = cfg.replace(**parallel_fields(parallel))
    r = {"schema_version": 1, "kind": "sweep_cell", "series": "gpu_scaling", "profile": "gpu2",
         "key": f"k:{parallel}", "cell": {"model": "opt-13b", "mode": "zo2", "dtype": "fp16", "batch": 8,
                                          "seq": 2048, "repeat": 0, "parallel": parallel},
         "config": cfg.as_dict(), "machine_id": machine, "status": "ok", "finished_utc": "2026-11-26T00:00:00Z",
         "step_time_s": {"median": step}, "tokens_per_s": 8 * 2048 / step,
         "fingerprint": {"git_commit": "abc", "git_dirty": False}}
    if gpus > 1:
        r["distributed"] = {"world_size": gpus, "ranks_per_host": gpus, "weight_shard": gpus, "strategy": parallel}
    return r


def _texts(blocks):
    return " ".join([b.text for b in blocks] + [c.text for b in blocks if b.table for r in b.table.rows for c in r])


def test_scaling_section_says_not_measured_without_rows_and_speed_ups_with_them(tmp_path):
    res = tmp_path / "results"
    other = res / "memory_scaling" / "box-1" / "20260101T000000Z.jsonl"
    results.append_row(other, {**_row("single", 1, 2.0), "series": "memory_scaling", "key": "memory",
                                "cell": {"model": "opt-13b"}})
    text = _texts(scaling_section.blocks(loader.load(res)))
    assert "not measured" in text and "gpu_scaling" in text
    f = res / "gpu_scaling" / "box-1" / "20260101T000000Z.jsonl"
    for r in (_row("single", 1, 2.0), _row("pert2+shard2", 2, 1.25)):
        results.append_row(f, r)
    blocks = scaling_section.blocks(loader.load(res))
    (t,) = [b.table for b in blocks if b.table]
    cells = {r[5].text: [c.text for c in r] for r in t.rows}
    assert cells["single"][8] == "1.00x" and cells["pert2+shard2"][8] == "1.60x" and cells["pert2+shard2"][9] == "80%"
    assert cells["pert2+shard2"][10] == "0.274 (transfer)"   # no calibration: the transfer floor alone
    assert cells["pert2+shard2"][11] == "1.68x"              # 0.460 s / 0.274 s
    assert any("multi-gpu.md" in n for n in t.notes)


@pytest.mark.gpu2
def test_bench_step_on_two_gpus_names_each_rank_gpu_and_the_pcie_floor(tmp_path):
    out = tmp_path / "b.json"
    argv = ["bench-step", "--model", "opt-125m", "--device", "cuda", "--dtype", "fp16", "--batch", "2", "--seq",
            "128", "--steps", "2", "--warmup", "1", "--nproc-per-node", "2", "--results-dir", str(tmp_path / "res"),
            "--out", str(out)]
    assert cli(argv) == 0
    b = json.loads(out.read_text())
    ranks = b["fingerprint"]["distributed"]["ranks"]
    assert [r["device"] for r in ranks] == ["cuda:0", "cuda:1"] and ranks[0]["gpu_uuid"] != ranks[1]["gpu_uuid"]
    assert b["distributed"]["backend"] == "nccl" and b["distributed_floors"]["pcie_s"] > 0
    assert all((r["memory"].get("measured") or {}).get("torch_peak_allocated_bytes") for r in b["distributed"]["ranks"])
