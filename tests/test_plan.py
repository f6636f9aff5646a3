"""`zo2bench plan`: what fits a budget, the largest batch x seq, predicted speed, document 002's table 3.1."""
import subprocess
import sys

import pytest
from synthetic_results import MACHINE, write

from zo2bench.analysis import load, scaling
from zo2bench.analysis import plan as planner
from zo2bench.analysis.models import Shape
from zo2bench.catalog import get
from zo2bench.cli import main
from zo2bench.commands.plan import parse_size
from zo2bench.errors import UserError

GIB = 2**30


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan") / "results"
    write(root)
    return root


@pytest.fixture(scope="module")
def analysis(results):
    return scaling.analyse(load.load(results), MACHINE)


def test_plan_prints_predictions_per_model_and_mode(results, capsys):
    assert main(["plan", "--gpu-memory", "24GiB", "--host-memory", "256GiB", "--results", str(results),
                 "--models", "opt-1.3b,opt-13b,opt-175b"]) == 0
    out = capsys.readouterr().out
    assert "PREDICTIONS" in out and "not measurements" in out
    lines = {tuple(line.split()[:3]) for line in out.splitlines()}
    assert ("opt-1.3b", "zo2", "fits") in lines
    assert any(line.startswith("opt-175b*") and " zo2 " in line and "does not fit" in line
               for line in out.splitlines())   # 175B's 350 GB of fp16 weights exceed 256 GiB of host memory
    assert "opt-175b zo2: needs more host memory" in out
    assert "Document 002 §3.1" in out and "002-3.1-13b-30b-gpu-min" in out


def test_the_largest_batch_fits_and_the_next_does_not(analysis):
    budget = planner.Budget(8 * GIB, 64 * GIB)
    r = planner.plan_one(analysis, budget, "opt-1.3b", "zo2")
    assert r.verdict == planner.FITS and r.seq == 2048
    gfit = analysis.memory_fit("nvml_process", "zo2")
    assert gfit.predict(Shape(get("opt-1.3b"), "zo2", "fp16", r.batch, 2048)).pi[1] <= budget.gpu_bytes
    if r.batch < planner.BATCHES[-1]:
        assert gfit.predict(Shape(get("opt-1.3b"), "zo2", "fp16", 2 * r.batch, 2048)).pi[1] > budget.gpu_bytes
    assert r.step.pi[0] < r.step.value < r.step.pi[1]
    assert r.tokens_per_s.value == pytest.approx(r.batch * r.seq / r.step.value)
    tiny = planner.plan_one(analysis, planner.Budget(0.5 * GIB, 64 * GIB), "opt-1.3b", "zo2")
    assert tiny.verdict == planner.NO and tiny.batch is None and "GPU" in tiny.reason


def test_a_slower_link_slows_zo2_but_not_mezo(analysis):
    fit = analysis.best_time()
    fast = planner.calibration_for(analysis, planner.Budget(80 * GIB, 512 * GIB))
    slow = planner.calibration_for(analysis, planner.Budget(80 * GIB, 512 * GIB, link_gb_per_s=8.0))
    for mode, slower in (("zo2", True), ("mezo", False)):
        shape = Shape(get("opt-6.7b"), mode, "fp16", 1, 2048)
        a, b = fit.predict(shape, fast).value, fit.predict(shape, slow).value
        assert (b > 1.5 * a) if slower else b == pytest.approx(a)
    # at its largest batch the step is compute-bound: the plan's verdict and batch do not depend on the link
    big = planner.plan_one(analysis, planner.Budget(80 * GIB, 512 * GIB, link_gb_per_s=8.0), "opt-6.7b", "zo2")
    assert big.verdict == planner.FITS and big.step is not None


def test_plan_marks_projections_and_batch_beyond_the_measured(analysis):
    r = planner.plan_one(analysis, planner.Budget(80 * GIB, 2048 * GIB), "opt-66b", "zo2")
    assert r.projection and r.verdict == planner.FITS
    small = planner.plan_one(analysis, planner.Budget(80 * GIB, 2048 * GIB), "opt-125m", "zo2")
    assert not small.projection and small.beyond_tokens        # the grid measured up to 16 x 2048 tokens


def test_size_band_check_of_document_002(analysis):
    ok = planner.size_band_check(analysis, (13e9, 30e9), 24e9, 256e9)
    assert ok.model == "opt-30b" and ok.verdict == planner.FITS
    starved = planner.size_band_check(analysis, (13e9, 30e9), 24e9, 16e9)
    assert starved.verdict == planner.NO


@pytest.mark.parametrize("text,value", [("24GiB", 24 * GIB), ("24GB", 24e9), ("1TiB", 2**40), ("16", 16 * GIB),
                                        ("0.5 GiB", GIB / 2)])
def test_parse_size(text, value):
    assert parse_size(text, "--gpu-memory") == value


@pytest.mark.parametrize("text", ["lots", "24XB", "-3GiB", ""])
def test_parse_size_rejects(text):
    with pytest.raises(UserError, match="not a size"):
        parse_size(text, "--gpu-memory")


def test_bad_plan_input_is_one_line_and_exit_2(results):
    for argv, needle in ((["--gpu-memory", "lots", "--host-memory", "1TiB"], "not a size"),
                         (["--gpu-memory", "24GiB", "--host-memory", "1TiB", "--models", "opt-13"], "did you mean"),
                         (["--gpu-memory", "24GiB", "--host-memory", "1TiB", "--link-gbps", "0"], "positive"),
                         (["--gpu-memory", "24GiB", "--host-memory", "1TiB", "--machine", "nosuch"], "machines")):
        p = subprocess.run([sys.executable, "-m", "zo2bench", "plan", *argv, "--results", str(results)],
                           capture_output=True, text=True)
        assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, (argv, p.stderr)
