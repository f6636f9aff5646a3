"""Experiment files: the shipped series load, grids expand as declared, and every mistake names file and key."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from zo2bench import catalog
from zo2bench.cli import main as cli_main
from zo2bench.errors import UserError
from zo2bench.experiments.spec import describe_experiments, load

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"

GOOD = """
description = "a test series"
[base]
device = "cuda"
[steps]
warmup = 1
measured = 3
[grid]
models = ["opt-1.3b", "opt-125m", "opt-350m"]
modes = ["zo2", "mezo"]
dtypes = ["fp16"]
batches = [1, 2]
seqs = [128]
[profiles.gpu]
[profiles.cpu]
base.device = "cpu"
grid.models = ["opt-tiny"]
grid.dtypes = ["fp32"]
steps.measured = 2
steps.repeats = 2
"""


def write(tmp_path: Path, text: str, name: str = "series.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(UserError) as e:
        load(path)
    return str(e.value)


# -- the shipped series ------------------------------------------------------------------------

def test_shipped_series_load_with_their_documented_grids():
    mem = load(EXPERIMENTS / "memory_scaling.toml")
    assert set(mem.profiles) == {"gpu", "cpu", "large"}
    assert {(c.config.model, c.config.mode) for c in mem.cells("large")} == {
        (m, mode) for m in ("opt-66b", "opt-175b") for mode in ("zo2", "mezo")}
    gpu = mem.cells("gpu")
    assert len(gpu) == 7 * 3  # OPT 125m..30b x zo2, mezo, fo-adamw
    assert {c.config.model for c in gpu} == {"opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b",
                                             "opt-13b", "opt-30b"}
    assert {(c.config.dtype, c.config.batch, c.config.seq) for c in gpu} == {("fp16", 1, 2048)}
    assert {c.config.mode for c in gpu} == {"zo2", "mezo", "fo-adamw"}
    cpu = mem.cells("cpu")
    assert all(c.config.device == "cpu" and c.config.dtype == "fp32" for c in cpu)
    assert len(cpu) <= 8  # each cell is a fresh process importing torch: keep the cpu profile short

    thr = load(EXPERIMENTS / "throughput_scaling.toml")
    cells = thr.cells("gpu")
    assert len(cells) == 3 * 2 * 4 * 3
    assert {c.config.batch for c in cells} == {1, 2, 4, 8} and {c.config.seq for c in cells} == {512, 1024, 2048}
    assert {c.config.mode for c in cells} == {"zo2", "mezo"}
    assert {(c.config.model, c.config.batch) for c in thr.cells("large")} == {
        (m, b) for m in ("opt-66b", "opt-175b") for b in (1, 8)}
    assert len(load(EXPERIMENTS / "smoke.toml").cells("cpu")) >= 1

    scal = load(EXPERIMENTS / "gpu_scaling.toml")
    assert set(scal.profiles) == {"gpu2", "gpu4", "large", "cpu"}
    assert max(c.config.nproc_per_node for c in scal.cells("gpu2")) == 2
    assert max(c.config.nproc_per_node for c in scal.cells("gpu4")) == 4
    assert {c.config.nproc_per_node for c in scal.cells("cpu")} == {1, 2} and len(scal.cells("cpu")) <= 4


def test_describe_experiments_lists_profiles_and_cell_counts(tmp_path):
    listed = {e["name"]: e for e in describe_experiments(EXPERIMENTS)}
    assert {"memory_scaling", "throughput_scaling", "smoke"} <= set(listed)
    assert listed["memory_scaling"]["cells"]["gpu"] == 21
    assert listed["memory_scaling"]["file"].endswith("memory_scaling.toml")

    write(tmp_path, GOOD, "good.toml")
    write(tmp_path, "[grid]\nmodels = 3\n", "broken.toml")
    listed = {e["name"]: e for e in describe_experiments(tmp_path)}
    assert listed["good"]["cells"] == {"gpu": 3 * 2 * 2, "cpu": 1 * 2 * 2 * 2}
    assert "grid.models" in listed["broken"]["error"] and not listed["broken"]["profiles"]


# -- expansion -----------------------------------------------------------------------------------

def test_grid_expands_smallest_model_first_with_stable_keys(tmp_path):
    exp = load(write(tmp_path, GOOD))
    cells = exp.cells("gpu")
    assert len(cells) == 12
    first_group = [c.config.model for c in cells if c.group == cells[0].group]
    assert first_group == ["opt-125m", "opt-350m", "opt-1.3b"]  # by exact parameter count, not file order
    assert [c.n_params for c in cells[:3]] == [catalog.get(m).n_params() for m in first_group]
    assert cells[0].key == "series:gpu:opt-125m:zo2:fp16:b1:s128:r0"
    assert len({c.key for c in cells}) == len(cells)
    assert all(c.config.steps == 3 and c.config.warmup == 1 and c.config.device == "cuda" for c in cells)


def test_profile_overrides_key_by_key_and_repeats_are_cells(tmp_path):
    exp = load(write(tmp_path, GOOD))
    cells = exp.cells("cpu")
    assert len(cells) == 1 * 2 * 1 * 2 * 1 * 2  # models x modes x dtypes x batches x seqs x repeats
    c = cells[0]
    assert (c.config.model, c.config.dtype, c.config.device, c.config.steps, c.config.warmup) == \
        ("opt-tiny", "fp32", "cpu", 2, 1)  # warmup inherited from the top level
    assert c.config.seq == 128 and c.repeats == 2
    assert {x.repeat for x in cells} == {0, 1}


def test_only_models_filters_the_grid_and_refuses_others(tmp_path):
    exp = load(write(tmp_path, GOOD))
    assert {c.config.model for c in exp.cells("gpu", ["opt-350m"])} == {"opt-350m"}
    with pytest.raises(UserError, match="opt-66b.*not in the grid"):
        exp.cells("gpu", ["opt-66b"])


def test_profile_choice(tmp_path):
    exp = load(write(tmp_path, GOOD))
    assert exp.choose_profile(None, cuda_available=True) == "gpu"
    assert exp.choose_profile(None, cuda_available=False) == "cpu"
    assert exp.choose_profile("cpu", cuda_available=True) == "cpu"
    with pytest.raises(UserError) as e:
        exp.choose_profile("tpu", cuda_available=False)
    assert "series.toml" in str(e.value) and "'tpu'" in str(e.value) and "gpu, cpu" in str(e.value)


def test_a_file_without_profiles_has_one_default(tmp_path):
    text = GOOD.split("[profiles.gpu]")[0]
    exp = load(write(tmp_path, text))
    assert list(exp.profiles) == ["default"]
    assert exp.choose_profile(None, cuda_available=False) == "default"


# -- mistakes are refused before anything runs, naming file and key ------------------------------

@pytest.mark.parametrize("old, new, key, expected", [
    ('description = "a test series"', 'modelz = 1', "modelz", "unknown key"),
    ('[steps]', 'modelz = 1\n[steps]', "base.modelz", "unknown key"),
    ('modes = ["zo2", "mezo"]', 'modes = ["zo2", "mezo"]\nmodez = ["zo2"]', "grid.modez", "unknown key"),
    ('steps.repeats = 2', 'steps.repeat = 2', "profiles.cpu.steps.repeat", "unknown key"),
    ('base.device = "cpu"', 'base.devise = "cpu"', "profiles.cpu.base.devise", "unknown key"),
    ('batches = [1, 2]', 'batches = "1"', "grid.batches", "a non-empty list of integers"),
    ('batches = [1, 2]', 'batches = [1, 0]', "grid.batches[1]", "integers >= 1"),
    ('measured = 3', 'measured = 1.5', "steps.measured", "an integer >= 1"),
    ('measured = 3', 'measured = true', "steps.measured", "an integer >= 1"),
    ('device = "cuda"', 'device = "cuda"\nlr = "big"', "base.lr", "a non-negative number"),
    ('device = "cuda"', 'device = "tpu"', "base.device", "auto, cpu, cuda or cuda:N"),
    ('device = "cuda"', 'device = "cuda"\nsteps = 4', "base.steps", "unknown key"),
    ('models = ["opt-1.3b", "opt-125m", "opt-350m"]', 'models = ["opt-1.3b", "opt-12m"]', "grid.models[1]",
     "unknown model 'opt-12m'"),
    ('grid.models = ["opt-tiny"]', 'grid.models = ["opt-tinyy"]', "profiles.cpu.grid.models[0]", "unknown model"),
    ('modes = ["zo2", "mezo"]', 'modes = ["zo2", "sgd"]', "grid.modes[1]", "modes among mezo, zo2"),
    ('dtypes = ["fp16"]', 'dtypes = ["fp8"]', "grid.dtypes[0]", "dtypes among fp32, fp16, bf16"),
    ('seqs = [128]', 'seqs = [4096]', "grid.seqs", "<= 2048"),
    ('measured = 3', 'warmup_steps = 3', "steps.warmup_steps", "unknown key"),
    ('[profiles.gpu]', '[x]', "x", "unknown key"),
    ('[profiles.gpu]', '[profiles.gpu.grid]\nmodels = "opt-tiny"', "profiles.gpu.grid.models", "a non-empty list"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, old, new, key, expected):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    message = error_of(path)
    assert message.startswith(str(path) + ": "), message
    assert f" {key}:" in message or f": {key}:" in message, message
    assert expected in message, message


def test_profiles_must_be_tables(tmp_path):
    top = GOOD.split("[profiles.gpu]")[0]
    assert "profiles: got 3 (int); expected a table" in error_of(write(tmp_path, "profiles = 3\n" + top))
    assert "profiles.cpu: got 3 (int)" in error_of(write(tmp_path, "profiles.cpu = 3\n" + top))


def test_missing_measured_steps_and_grid_axes_are_named(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace("measured = 3\n", "")))
    assert "steps.measured: missing" in message and "profile 'gpu'" in message
    message = error_of(write(tmp_path, GOOD.replace('dtypes = ["fp16"]\n', "")))
    assert "grid.dtypes: missing" in message and "profile 'gpu'" in message


def test_unknown_model_suggests_close_names(tmp_path):
    message = error_of(write(tmp_path, GOOD.replace('"opt-350m"]', '"opt-350"]')))
    assert "grid.models[2]" in message and "did you mean" in message and "opt-350m" in message


def test_not_toml_and_missing_file(tmp_path):
    assert "not valid TOML" in error_of(write(tmp_path, "[grid\nmodels = 1"))
    assert "no such experiment file" in error_of(tmp_path / "absent.toml")


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    bad = write(tmp_path, GOOD.replace('dtypes = ["fp16"]', 'dtypes = ["fp8"]'))
    for argv in (["sweep", str(bad)], ["sweep", str(tmp_path / "absent.toml")],
                 ["sweep", str(write(tmp_path, GOOD, "ok.toml")), "--profile", "tpu", "--results-dir", str(tmp_path)]):
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("zo2bench: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not any(tmp_path.rglob("*.jsonl"))  # nothing ran, nothing written
