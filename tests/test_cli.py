"""The command line: list, run, and one clear message with exit status 2 for bad input."""
import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zo2bench
from zo2bench import results
from zo2bench.cli import COMMANDS, SIGPIPE_EXIT, build_parser, main


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
    assert len([line for line in p.stderr.splitlines() if line.startswith("zo2bench: error")]) == 1


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


# -- help, version, no command -------------------------------------------------------------------------

def test_no_command_prints_the_help_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: zo2bench") and all(name in out for name in COMMANDS)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"zo2bench {zo2bench.__version__}"


def _subparsers(parser, prefix=""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + name, sub
                yield from _subparsers(sub, prefix + name + " ")


def test_every_option_shows_its_default():
    parsers = dict(_subparsers(build_parser()))
    assert {"run", "calibrate", "bench-step", "list", "sweep", "results list", "results export"} <= set(parsers)
    for name, sub in parsers.items():
        for action in sub._actions:
            if not action.option_strings or action.default is argparse.SUPPRESS or action.default is False:
                continue  # positionals, --help, flags
            text = sub._get_formatter()._expand_help(action)
            if action.default is not None:
                assert f"(default: {action.default})" in text, (name, action.dest, text)
            elif name != "sweep":  # an option without a value says what happens without it
                assert "default" in text, (name, action.dest, text)


# -- broken pipes ---------------------------------------------------------------------------------------

def _with_closed_stdout(args: list[str]) -> subprocess.CompletedProcess:
    """Run the command with stdout a pipe whose reader is gone before the first byte, as after `| head`."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "zo2bench", *args], stdout=w, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(w)


def test_list_models_into_a_closed_pipe_ends_quietly():
    p = _with_closed_stdout(["list", "models"])
    assert p.returncode == SIGPIPE_EXIT and p.stderr == ""


def test_results_export_into_a_closed_pipe_ends_quietly(tmp_path):
    for i in range(50):
        results.append_row(tmp_path / "toy" / "box" / "x.jsonl", {"series": "toy", "key": f"k{i}", "status": "ok"})
    p = _with_closed_stdout(["results", "export", "--results-dir", str(tmp_path)])
    assert p.returncode == SIGPIPE_EXIT and p.stderr == ""


def test_head_reads_a_line_and_the_command_ends_quietly():
    p = subprocess.run(["bash", "-o", "pipefail", "-c", f"{sys.executable} -m zo2bench list models | head -1"],
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.startswith("model") and "Traceback" not in p.stderr and "Error" not in p.stderr


# -- paths are checked before the work -----------------------------------------------------------------

RUN = ["run", "--model", "opt-tiny", "--steps", "1", "--seq", "8", "--device", "cpu"]
BENCH = ["bench-step", "--model", "opt-tiny", "--steps", "1", "--warmup", "0", "--seq", "8", "--device", "cpu"]


def _bad_place(kind: str, tmp_path: Path) -> str:
    if kind == "directory":
        return str(tmp_path)
    if kind == "missing folder":
        return str(tmp_path / "no" / "such" / "r.json")
    if os.geteuid() == 0:  # root writes through permission bits; /sys takes no new file, not even from root
        return "/sys/zo2bench-r.json"
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro / "r.json")


@pytest.mark.parametrize("kind", ["directory", "missing folder", "read-only"])
@pytest.mark.parametrize("command", [RUN, BENCH, ["calibrate", "--device", "cpu"], ["results", "export"]],
                         ids=["run", "bench-step", "calibrate", "results-export"])
def test_a_bad_out_stops_before_the_work(command, kind, tmp_path, capsys):
    assert main([*command, "--out", _bad_place(kind, tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("zo2bench: error: --out ") and out == ""


@pytest.mark.parametrize("kind", ["missing", "directory", "not a calibration"])
def test_a_bad_calibration_stops_bench_step_before_the_steps(kind, tmp_path, capsys):
    path = {"missing": tmp_path / "none.json", "directory": tmp_path, "not a calibration": tmp_path / "run.json"}[kind]
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 1, "kind": "run"}))
    assert main([*BENCH, "--calibration", str(path), "--results-dir", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("zo2bench: error:") and out == ""


@pytest.mark.parametrize("where", ["/nonexistent", "a file", "empty"])
def test_list_experiments_wants_a_folder_of_experiments(where, tmp_path, capsys):
    path = {"/nonexistent": "/nonexistent", "a file": str(tmp_path / "f.toml"), "empty": str(tmp_path)}[where]
    (tmp_path / "f.toml").write_text("")
    if where == "empty":
        (tmp_path / "f.toml").unlink()
    assert main(["list", "experiments", "--dir", path]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("zo2bench: error: --dir ")


# -- what run prints and where -------------------------------------------------------------------------

def test_run_says_what_it_does_then_shows_progress(tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path / "r.json")]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines[0].startswith("run: importing torch and transformers")
    assert "run: building the model" in lines and "run: measured steps" in lines
    assert any(line.startswith("run: step 1/1") for line in lines)
    assert "median" in out and f"wrote {tmp_path / 'r.json'}" in err  # the summary with --out as well


def test_run_out_dash_prints_the_record_and_the_summary_on_stderr(capsys):
    assert main([*RUN, "--out", "-"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["kind"] == "run" and "median" in err


def test_run_on_the_cpu_defaults_to_fp32(tmp_path, capsys):
    assert main([*RUN, "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["config"]["dtype"] == "fp32"
    assert "dtype=fp32" in capsys.readouterr().err
    assert "fp16 on a GPU, fp32 on a CPU (default: auto)" in " ".join(_help("run").split())


def _help(command: str) -> str:
    return dict(_subparsers(build_parser()))[command].format_help()


def test_a_record_that_cannot_be_written_goes_to_stdout(tmp_path, capsys, monkeypatch):
    def full_disk(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "write_json_atomic", full_disk)
    assert main([*RUN, "--out", str(tmp_path / "r.json")]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["kind"] == "run" and not (tmp_path / "r.json").exists()
    assert "No space left on device" in err and "follows on stdout" in err and "median" in err
