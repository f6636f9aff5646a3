"""calibrate through the CLI on the CPU (fast), its errors, and finding a stored calibration by machine."""
import json

import pytest
import torch

from zo2bench import cli
from zo2bench.bench.calibrate import (CPU_FIGURES, FIGURES, GPU_FIGURES, find_calibration, load_calibration,
                                      same_machine)
from zo2bench.errors import UserError
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


def test_progress_on_stderr_and_table_on_stdout(capsys):
    assert cli.main(["calibrate", "--device", "cpu", "--size-gib", "0.01", "--repeats", "1", "--matmul-n", "128"]) == 0
    out, err = capsys.readouterr()
    assert "host_mem_rw_gb_per_s" in out and "not measured" in out
    assert err.count("calibrate:") >= 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_device_cuda_without_gpu_is_one_line(capsys):
    assert cli.main(["calibrate", "--device", "cuda", "--size-gib", "0.01"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().count("\n") == 0 and err.startswith("zo2bench: error:") and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--size-gib", "0"], ["--repeats", "0"], ["--device", "tpu"]])
def test_bad_settings_exit_2(argv, capsys):
    assert cli.main(["calibrate", *argv]) == 2
    assert capsys.readouterr().err.startswith("zo2bench: error:")


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
