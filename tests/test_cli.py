"""The command line: list, run, and one clear message with exit status 2 for bad input."""
import json
import subprocess
import sys

import pytest
import torch

from zo2bench.cli import main


def test_list_models_shows_exact_counts(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "opt-175b" in out and "174,604,468,224" in out and "llama2-7b" in out


def test_list_experiments_shows_profiles_and_cells(capsys):
    assert main(["list", "experiments"]) == 0
    out = capsys.readouterr().out
    assert "memory_scaling" in out and "gpu: 21 cells" in out and "throughput_scaling" in out and "gpu: 72 cells" in out


def test_run_writes_a_record(tmp_path):
    out = tmp_path / "r.json"
    assert main(["run", "--model", "opt-tiny", "--mode", "zo2", "--steps", "2", "--seq", "16", "--dtype", "fp32",
                 "--seed", "7", "--device", "cpu", "--out", str(out)]) == 0
    rec = json.loads(out.read_text())
    assert rec["schema_version"] == 1 and rec["config"]["seed"] == 7 and rec["config"]["mode"] == "zo2"
    assert [set(s) >= {"loss_plus", "loss_minus", "projected_grad", "seconds"} for s in rec["steps"]] == [True] * 2
    assert len(rec["final_params_sha256"]) == 64 and rec["model"]["n_params"] == 298_496
    assert "torch" in rec["fingerprint"]


def test_run_without_out_prints_a_summary(capsys):
    assert main(["run", "--model", "opt-tiny", "--steps", "1", "--seq", "8", "--device", "cpu", "--dtype", "fp32"]) == 0
    assert "median" in capsys.readouterr().out


BAD = [
    (["--model", "opt-13", "--device", "cpu"], "did you mean"),
    (["--model", "opt-tiny", "--seq", "4096", "--device", "cpu"], "positions"),
    (["--model", "opt-tiny", "--batch", "0", "--device", "cpu"], "--batch"),
    (["--model", "opt-tiny", "--steps", "0", "--device", "cpu"], "--steps"),
    (["--model", "opt-tiny", "--mode", "sgd", "--device", "cpu"], "unknown mode"),
    (["--model", "opt-tiny", "--dtype", "fp8", "--device", "cpu"], "unknown dtype"),
    (["--model", "opt-tiny", "--device", "tpu"], "device"),
]
if not torch.cuda.is_available():
    BAD.append((["--model", "opt-tiny", "--device", "cuda"], "no CUDA GPU"))


@pytest.mark.parametrize("argv,needle", BAD)
def test_bad_input_one_line_exit_2(argv, needle):
    p = subprocess.run([sys.executable, "-m", "zo2bench", "run", *argv], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr and "Traceback" not in p.stderr
    assert len([l for l in p.stderr.splitlines() if l.startswith("zo2bench: error")]) == 1


def test_non_finite_loss_names_step_and_seed(capsys):
    # An absurd learning rate drives fp16 weights to inf within a few steps.
    code = main(["run", "--model", "opt-tiny", "--steps", "30", "--seq", "8", "--device", "cpu", "--dtype", "fp16",
                 "--lr", "1e6", "--eps", "0.5", "--seed", "11"])
    err = capsys.readouterr().err
    assert code == 2 and "non-finite loss at step" in err and "seed 11" in err


def test_sweep_redo_before_wants_a_utc_time(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "experiments/smoke.toml", "--redo-before", "yesterday"])
    assert e.value.code == 2 and "not a UTC time like" in capsys.readouterr().err
