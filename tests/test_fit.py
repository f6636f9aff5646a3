"""The fits: known constants recovered from rows the models generated, intervals, leave-one-size-out, the
crossover, and the analysis of a whole synthetic results folder."""
import math
import random

import numpy as np
import pytest
from synthetic_results import CALIBRATION, MACHINE, TIME_TRUTH, write

from zo2bench.analysis import crossover as xo
from zo2bench.analysis import load, scaling
from zo2bench.analysis.fit import Point, compare, fit_model
from zo2bench.analysis.models import TIME_MODELS, Shape, memory_models
from zo2bench.catalog import get

SIZES = ("opt-125m", "opt-350m", "opt-1.3b", "opt-2.7b", "opt-6.7b", "opt-13b")
CAL = {"figures": CALIBRATION}


def _points(model, truth, shapes, scatter=0.01, seed=0, cal=None):
    rng = random.Random(seed)
    y = model.f(model.x(shapes, cal), np.array(truth))
    return [Point(s, float(v) * (1 + rng.gauss(0, scatter))) for s, v in zip(shapes, y)]


def _grid(mode, sizes=SIZES, tokens=((1, 2048), (4, 1024), (8, 2048))):
    return [Shape(get(m), mode, "fp16", b, s) for m in sizes for b, s in tokens]


def test_memory_fit_recovers_known_constants():
    model = memory_models("zo2", "nvml_process")[0]
    truth = (1.5, 2.5, 12.0, 9e8)
    f = fit_model(model, _points(model, truth, _grid("zo2")), "nvml_process", "bytes", "m")
    for est, true in zip(f.params, truth):
        assert est.low <= true <= est.high, (est, true)
        assert est.value == pytest.approx(true, rel=0.1)
    assert f.r2 > 0.99 and f.rms_rel < 0.02 and f.dof == len(f.points) - 4


def test_fit_without_scatter_is_exact_and_a_wrong_form_is_not():
    model = memory_models("mezo", "torch_allocated")[0]
    truth = (1.03, 13.0, 9e8)
    pts = _points(model, truth, _grid("mezo"), scatter=0.0)
    f = fit_model(model, pts, "torch_allocated", "bytes", "m")
    assert [e.value for e in f.params] == pytest.approx(truth, rel=1e-6)
    assert f.rms_rel < 1e-8
    doc = fit_model(memory_models("zo2", "torch_allocated")[1], pts, "torch_allocated", "bytes", "m")
    assert doc.rms_rel > 100 * f.rms_rel


def test_a_term_the_data_do_not_need_sits_at_its_bound_without_interval():
    model = memory_models("mezo", "nvml_process")[0]
    f = fit_model(model, _points(model, (1.0, 0.0, 1e9), _grid("mezo"), scatter=0.002), "v", "bytes", "m")
    c_a = next(e for e in f.params if e.name == "c_a")
    assert c_a.value >= 0
    if c_a.at_bound:
        assert c_a.low is None and c_a.se is None


def test_prediction_interval_is_wider_than_confidence_and_projection_is_marked():
    model = memory_models("zo2", "nvml_process")[0]
    f = fit_model(model, _points(model, (1.5, 2.5, 12.0, 9e8), _grid("zo2")), "v", "bytes", "m")
    inside = f.predict(Shape(get("opt-1.3b"), "zo2", "fp16", 2, 2048))
    far = f.predict(Shape(get("opt-175b"), "zo2", "fp16", 1, 2048))
    assert not inside.projection and far.projection
    for p in (inside, far):
        assert p.pi[0] < p.ci[0] <= p.value <= p.ci[1] < p.pi[1]


def test_leave_one_size_out_reports_every_point():
    model = memory_models("zo2", "torch_allocated")[0]
    pts = _points(model, (1.5, 2.5, 12.0, 9e8), _grid("zo2"), scatter=0.005)
    f = fit_model(model, pts, "v", "bytes", "m")
    assert len(f.loo) == len(pts)
    assert {h.point.shape.spec.name for h in f.loo} == set(SIZES)
    errs = [h.error_rel for h in f.loo]
    assert all(e is not None for e in errs) and max(map(abs, errs)) < 0.1
    # each held-out size was predicted by a fit that did not see it: its error differs from the in-sample one
    assert f.loo_max_abs >= max(abs(r) for r in f.residuals_rel) * 0.5


def test_leave_one_out_says_when_too_few_sizes_remain():
    model = memory_models("zo2", "nvml_process")[0]            # 4 constants
    pts = _points(model, (1.5, 2.5, 12.0, 9e8), _grid("zo2", SIZES[:2], ((1, 2048), (4, 2048), (8, 512))))
    f = fit_model(model, pts, "v", "bytes", "m")
    assert all(h.predicted is None and h.error_rel is None for h in f.loo)


def test_time_fit_recovers_overlap_constants_and_beats_the_document_form():
    shapes = [s for mode in ("zo2", "mezo") for s in _grid(mode, SIZES[1:], ((1, 512), (2, 2048), (8, 2048),
                                                                            (32, 2048)))]
    pts = _points(TIME_MODELS["overlap"], TIME_TRUTH, shapes, scatter=0.01, cal=CAL)
    fits = [fit_model(m, pts, "step_time_s", "s", "m", CAL) for m in TIME_MODELS.values()]
    best = compare(fits)
    assert best[0]["model"] in ("overlap", "overlap-link")
    over = next(f for f in fits if f.model.name == "overlap")
    assert [e.value for e in over.params] == pytest.approx(TIME_TRUTH, rel=0.1)
    doc = next(f for f in fits if f.model.name == "document")
    assert doc.rms_rel > 3 * over.rms_rel and doc.loo_max_abs > over.loo_max_abs
    link = next(f for f in fits if f.model.name == "overlap-link")
    assert link.value("b") == pytest.approx(1.0, rel=0.05)


def test_crossover_measured_bracket_and_fit():
    class R:
        def __init__(self, mode, batch, t):
            self.data = {}
            self.source = None
            self._d = {"cell": {"model": "opt-1.3b", "mode": mode, "dtype": "fp16", "batch": batch, "seq": 2048},
                       "step_time_s": {"median": t}}

        def get(self, *path):
            d = self._d
            for p in path:
                d = d.get(p) if isinstance(d, dict) else None
            return d

    # zo2 costs 2x, 1.5x, then 1.04x and 1.01x of mezo: the crossover lies between 4096 and 8192 tokens
    rows = [R("mezo", b, 0.1 * b) for b in (1, 2, 4, 8)] + [R("zo2", 1, 0.2), R("zo2", 2, 0.3), R("zo2", 4, 0.416),
                                                            R("zo2", 8, 0.808)]
    (x,) = xo.crossovers(rows, None, extra=())
    assert x.measured == ((2048, 4096, 8192),)
    never = [R("mezo", 1, 0.1), R("zo2", 1, 0.5)]
    assert xo.crossovers(never, None, extra=())[0].measured == ((2048, 2048, None),)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit") / "results"
    write(root)
    return scaling.analyse(load.load(root), MACHINE)


def test_analysis_of_a_results_folder_recovers_the_generating_constants(analysis):
    a = analysis
    f = a.memory_fit("nvml_process", "zo2")
    assert [e.value for e in f.params] == pytest.approx((1.5, 2.5, 12.0, 9e8), rel=0.15)
    assert a.memory[("nvml_process", "zo2")][1].model.source == "document"
    assert a.best_time().model.name in ("overlap", "overlap-link")
    assert a.best_time().value("a") == pytest.approx(TIME_TRUTH[0], rel=0.1)
    names = {p.model for p in a.projections}
    assert {"opt-66b", "opt-175b", "mt-nlg-530b", "1t"} <= names
    assert all(p.gpu is None or p.gpu.projection for p in a.projections)


def test_crossover_of_the_analysis_agrees_with_the_generating_model(analysis):
    fit = analysis.best_time()
    x = next(c for c in analysis.crossovers if c.model == "opt-6.7b")
    seq, tok, lo, hi = next(f for f in x.fitted if f[0] == 2048)
    # where the generating model puts zo2 within the tolerance of mezo: G = X / 1.05
    spec = get("opt-6.7b")
    m = TIME_MODELS["overlap"]
    C, M, X, _ = m.inputs(Shape(spec, "zo2", "fp16", 1, 2048), CAL)
    a, d, c = TIME_TRUTH
    true_batch = (X / (1 + xo.TOLERANCE) - c - d * M) / (a * C)   # zo2 within the tolerance of mezo
    assert tok == pytest.approx(true_batch * 2048, rel=0.15)
    assert lo <= tok <= hi and math.isfinite(hi)
    assert fit.calibration is not None


def test_rows_with_deferred_write_back_get_their_own_floor_and_stay_out_of_the_time_fits(tmp_path):
    """A zo2 row run with writeback_every = K > 1 moves a K-th of the offload: the throughput table gives it the
    deferred floor, and the step-time fits (every block both ways every step) leave it out, saying so."""
    import json

    from zo2bench.report import fit_tables

    write(tmp_path)
    f = next((tmp_path / "throughput_scaling" / MACHINE).glob("*.jsonl"))
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    base = next(r for r in rows if r["cell"]["mode"] == "zo2" and r["cell"]["batch"] == 1 and r["cell"]["seq"] == 2048)
    k4 = json.loads(json.dumps(base))
    k4["key"] += ":k4"
    k4["config"]["writeback_every"] = 4
    with open(f, "a") as out:
        out.write(json.dumps(k4) + "\n")
    res = load.load(tmp_path)
    a = scaling.analyse(res, MACHINE)
    assert any("deferred write-back" in n and n.startswith("1 zo2 row") for n in a.notes)
    table = fit_tables.throughput_measured(a, "throughput_scaling")
    text = [tuple(c.text for c in r) for r in table.rows]
    mine = [r for r in text if r[:4] == (base["cell"]["model"], "zo2", "1", "2048")]
    assert len(mine) == 2
    floors = [r[7] for r in mine]
    assert any("write-back 1/4" in x for x in floors) and any("write-back" not in x for x in floors)
    k1_floor, k4_floor = (float(x.split()[0]) for x in sorted(floors, key=lambda x: "write-back" in x))
    assert k4_floor < k1_floor  # less moved per step: a lower transfer floor


def test_llama_rows_are_shown_but_do_not_move_the_fits(tmp_path, analysis):
    """The fits stand for OPT-shaped formulas and projections: a Llama-style row, however far off, changes
    no coefficient, and the analysis says it was left out."""
    import json

    from synthetic_results import row

    write(tmp_path)
    f = next((tmp_path / "throughput_scaling" / MACHINE).glob("*.jsonl"))
    odd = row("throughput_scaling", "llama3.2-1b", "zo2", 1, 2048, random.Random(0))
    odd["step_time_s"] = {k: v * 50 if k != "n" else v for k, v in odd["step_time_s"].items()}
    with open(f, "a") as out:
        out.write(json.dumps(odd) + "\n")
    a = scaling.analyse(load.load(tmp_path), MACHINE)
    assert [e.value for e in a.best_time().params] == [e.value for e in analysis.best_time().params]
    assert [e.value for e in a.memory_fit("nvml_process", "zo2").params] == \
        [e.value for e in analysis.memory_fit("nvml_process", "zo2").params]
    assert any("Llama-style" in n for n in a.notes)
    assert any(r.get("cell", "model") == "llama3.2-1b" for r in a.rows)
