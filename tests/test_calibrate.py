"""calibrate through the CLI on the CPU (fast), its errors, sizes that fit the device, and a calibration
stored for the machine, found again by machine and device."""
import json

import pytest
import torch

from zo2bench import cli
from zo2bench.bench.calibrate import (
    CPU_FIGURES,
    CPU_SIZES,
    FIGURES,
    GPU_FIGURES,
    GPU_SIZES,
    Sizes,
    calibrate,
    find_calibration,
    load_calibration,
    same_machine,
    store_calibration,
    stored_or_measured,
)
from zo2bench.errors import UserError
from zo2bench.probes.fingerprint import machine_id
from zo2bench.results import SCHEMA_VERSION, write_json_atomic


@pytest.fixture(scope="module")
def cpu_record(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "cpu.json"
    rc = cli.main(["calibrate", "--device", "cpu", "--out", str(out), "--size-gib", "0.05", "--repeats", "2",
                   "--matmul-n", "256"])
    assert rc == 0
    return load_calibration(out)


def test_cpu_record_shape(cpu_record):
    r = cpu_record
    assert r["schema_version"] == SCHEMA_VERSION and r["kind"] == "calibration"
    assert set(r["figures"]) == set(FIGURES)
    for key in GPU_FIGURES:  # not measured: None, never 0, and a reason
        assert r["figures"][key] is None and r["not_measured"][key]
    for key in CPU_FIGURES:
        fig = r["figures"][key]
        assert fig["repeats"] == 2 and 0 < fig["min"] <= fig["median"] <= fig["max"]
    assert r["settings"]["size_bytes"] == int(0.05 * 2**30) and r["settings"]["matmul_n"] == 256
    assert "hostname" in r["fingerprint"]


def test_progress_on_stderr_table_on_stdout_and_the_record_stored(tmp_path, capsys):
    assert cli.main(["calibrate", "--device", "cpu", "--size-gib", "0.01", "--repeats", "1", "--matmul-n", "128",
                     "--results-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "host_mem_rw_gb_per_s" in out and "not measured" in out
    assert err.count("calibrate:") >= 3
    stored = list(tmp_path.glob("calibration/*/calibration-*.json"))
    assert len(stored) == 1 and f"stored {stored[0]}" in err
    record = load_calibration(stored[0])
    assert stored[0].parent.name == machine_id(record["fingerprint"]) and record["settings"]["matmul_n"] == 128


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_device_cuda_without_gpu_is_one_line(capsys):
    assert cli.main(["calibrate", "--device", "cuda", "--size-gib", "0.01"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().count("\n") == 0 and err.startswith("zo2bench: error:") and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--size-gib", "0"], ["--repeats", "0"], ["--device", "tpu"]])
def test_bad_settings_exit_2(argv, tmp_path, capsys):
    assert cli.main(["calibrate", *argv, "--results-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("zo2bench: error:")
    assert not any(tmp_path.iterdir())


def test_results_dir_that_is_a_file_stops_before_measuring(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert cli.main(["calibrate", "--device", "cpu", "--results-dir", str(tmp_path / "f" / "sub")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("zo2bench: error: --results-dir") and "calibrate:" not in err


def test_find_calibration_matches_and_rejects(tmp_path, cpu_record):
    fp = cpu_record["fingerprint"]
    write_json_atomic(tmp_path / "cal.json", cpu_record)
    write_json_atomic(tmp_path / "runs" / "run.json", {"schema_version": 1, "kind": "run", "fingerprint": fp})
    (tmp_path / "broken.json").write_text("{not json")
    newer = {**cpu_record, "created_utc": "2999-01-01T00:00:00+00:00"}
    write_json_atomic(tmp_path / "sub" / "newer.json", newer)

    found = find_calibration(tmp_path, fp)
    assert found is not None and found["source_path"].endswith("newer.json")  # the newest of two

    other_gpu = {**fp, "gpu": "NVIDIA H100 80GB HBM3", "gpu_driver_version": "580.159.04"}
    assert not same_machine(fp, other_gpu) and find_calibration(tmp_path, other_gpu) is None
    assert find_calibration(tmp_path, {**fp, "hostname": "elsewhere"}) is None
    assert find_calibration(tmp_path, {**fp, "pcie_gen_max": 3, "pcie_width_max": 16}) is None
    # the current PCIe generation drops at idle: it does not make another machine
    assert find_calibration(tmp_path, {**fp, "pcie_gen_current": 1}) is not None
    assert find_calibration(tmp_path / "absent", fp) is None


def test_load_calibration_rejects_other_records(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 1, "kind": "run"}))
    with pytest.raises(UserError):
        load_calibration(tmp_path / "run.json")
    with pytest.raises(UserError):
        load_calibration(tmp_path / "missing.json")


@pytest.mark.gpu
def test_cuda_calibration_measures_every_gpu_figure(tmp_path):
    out = tmp_path / "gpu.json"
    assert cli.main(["calibrate", "--device", "cuda", "--out", str(out), "--size-gib", "0.25", "--repeats", "2",
                     "--matmul-n", "2048"]) == 0
    r = load_calibration(out)
    for key in GPU_FIGURES:
        assert r["figures"][key]["median"] > 0
    assert r["settings"]["pinning"] in ("cudaHostRegister", "pin_memory")
    # two directions at once move more in total than one alone, and pinned beats pageable
    f = {k: v["median"] for k, v in r["figures"].items() if v}
    assert f["both_directions_pinned_gb_per_s"] > f["h2d_pinned_gb_per_s"]
    assert f["h2d_pinned_gb_per_s"] > f["h2d_pageable_gb_per_s"]
    assert f["matmul_bf16_tflop_per_s"] > f["matmul_fp32_tflop_per_s"]
    assert find_calibration(tmp_path, r["fingerprint"])["source_path"] == str(out)


# -- sizes that fit the device; measured once per machine ----------------------------------------------

def test_sizes_fit_the_device():
    assert GPU_SIZES == Sizes(size_gib=1.0, repeats=5, matmul_n=8192)  # the GPU figures stay comparable
    assert CPU_SIZES.size_gib <= 0.25 and CPU_SIZES.matmul_n <= 1024 and CPU_SIZES.repeats <= 3


def test_cpu_calibration_without_sizes_takes_the_cpu_sizes(capsys):
    record = calibrate(device="cpu")
    s = record["settings"]
    assert (s["size_gib"], s["repeats"], s["matmul_n"]) == (CPU_SIZES.size_gib, CPU_SIZES.repeats, CPU_SIZES.matmul_n)
    assert all(record["figures"][k]["repeats"] == CPU_SIZES.repeats for k in CPU_FIGURES)
    err = capsys.readouterr().err
    assert err.startswith("calibrate: measuring cpu: copies of 0.25 GiB, matmuls 1024^3")


def test_measured_once_then_found(tmp_path, cpu_record, monkeypatch, capsys):
    fp = cpu_record["fingerprint"]
    calls = []

    def small(device):  # the real measurement, at test sizes, counted
        calls.append(device)
        return calibrate(device, size_gib=0.01, repeats=1, matmul_n=64)

    monkeypatch.setattr("zo2bench.bench.calibrate.calibrate", small)
    first, how = stored_or_measured(tmp_path, fp, "cpu")
    files = list((tmp_path / "calibration" / machine_id(fp)).glob("calibration-*.json"))
    assert calls == ["cpu"] and len(files) == 1 and how == f"measured in this run, stored as {files[0]}"
    again, how = stored_or_measured(tmp_path, fp, "cpu")
    assert calls == ["cpu"] and how == f"stored, same machine: {files[0]}"
    assert again["figures"] == json.loads(json.dumps(first["figures"]))
    assert "measuring one now" in capsys.readouterr().err


def test_a_calibration_of_another_device_kind_is_not_used(tmp_path, cpu_record):
    fp = cpu_record["fingerprint"]
    gpu_like = {**cpu_record, "settings": {**cpu_record["settings"], "device": "cuda:0"}}
    store_calibration(gpu_like, tmp_path)
    assert find_calibration(tmp_path, fp, device="cpu") is None
    assert find_calibration(tmp_path, fp, device="cuda:1")["settings"]["device"] == "cuda:0"
    assert find_calibration(tmp_path, fp) is not None  # without a device, any of this machine


def test_store_never_overwrites(tmp_path, cpu_record):
    a, b = store_calibration(cpu_record, tmp_path), store_calibration(cpu_record, tmp_path)
    assert a != b and a.exists() and b.exists() and b.name.endswith("-2.json")


def test_bench_step_on_the_cpu_calibrates_once_and_stores_it(tmp_path, capsys):
    argv = ["bench-step", "--model", "opt-tiny", "--device", "cpu", "--seq", "16", "--steps", "2", "--warmup", "1",
            "--results-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    stored = list(tmp_path.glob("calibration/*/calibration-*.json"))
    assert len(stored) == 1 and f"measured in this run, stored as {stored[0]}" in out
    assert "calibrate: measuring cpu" in err and "fp32" in out  # CPU sizes, and the CPU's default dtype
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert f"stored, same machine: {stored[0]}" in out and "calibrate:" not in err
    assert len(list(tmp_path.glob("calibration/*/calibration-*.json"))) == 1
