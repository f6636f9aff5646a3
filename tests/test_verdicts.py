"""Evidence with provenance from result files, and the verdict rules at their edges (tmp_path fixtures only)."""
import json
from pathlib import Path

import pytest

from zo2bench.analysis import claims, evidence, matching, units, verdicts
from zo2bench.analysis.claims import Claim
from zo2bench.analysis.verdicts import FAILS, HOLDS, PARTIAL, UNTESTED

REPO = Path(__file__).resolve().parent.parent
H100 = "NVIDIA H100 80GB HBM3"


def row(model="opt-125m", mode="zo2", batch=1, seq=2048, dtype="fp16", *, nvml=1.0e9, rss=2.0e9, step=0.1,
        status="ok", machine="m1", gpu=H100, commit="abc1234", dirty=False, n_params=125_239_296, power=100.0,
        energy=10.0, key=None, schema=1, budget=None):
    key = key or f"s:{model}:{mode}:{dtype}:b{batch}:s{seq}"
    r = {"schema_version": schema, "kind": "sweep_cell", "series": "s", "key": key, "machine_id": machine,
         "cell": {"model": model, "mode": mode, "dtype": dtype, "batch": batch, "seq": seq, "repeat": 0},
         "config": {"model": model, "mode": mode, "batch": batch, "seq": seq, "dtype": dtype,
                    "gpu_budget_gib": budget},
         "n_params": n_params, "status": status, "run_id": "r", "reason": None if status == "ok" else "too big",
         "fingerprint": {"gpu": gpu, "git_commit": commit, "git_dirty": dirty}}
    if status == "ok":
        r |= {"step_time_s": {"n": 5, "median": step, "q1": step * 0.9, "q3": step * 1.1},
              "memory": {"views": {"measured": {"nvml_process_peak_bytes": nvml, "host_rss_peak_bytes": rss,
                                                "torch_peak_allocated_bytes": nvml / 2}}},
              "probes": {"phases": {"measured": {"energy_j": energy, "power_w": {"mean": power}}}},
              "model": {"n_blocks": 12}, "offload": {"resident_blocks": 0 if mode == "zo2" else 12}}
    return r


def write(root: Path, rows, series="s", machine="m1", name="20260101T000000Z.jsonl") -> Path:
    p = root / series / machine / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def claim(**kw) -> Claim:
    d = dict(id="t-1", document="002", section="9.9", text="t", value=1.0, unit="GB", hardware="unstated",
             quantity="gpu_memory", sense="ceiling", model="opt-125m", mode="zo2", view="nvml_process")
    return Claim(**(d | kw))


def one(c, ev, **kw):
    (v,) = [v for v in verdicts.judge(c, ev, **kw) if v.basis not in ("document", "catalog")]
    return v


# -- evidence -------------------------------------------------------------------------------------------
def test_every_value_carries_its_provenance(tmp_path):
    p = write(tmp_path, [row(), row(model="opt-350m", commit=None, dirty=None), row(model="opt-1.3b", dirty=True)])
    ev = evidence.load(tmp_path, quiet=True)
    mem = ev.select(quantity="gpu_memory", view="nvml_process")
    assert list(mem["line"]) == [1, 2, 3]
    assert list(mem["flag"]) == ["clean", "unknown", "dirty"]
    prov = evidence.provenance(mem.iloc[0])
    assert (prov.file, prov.line, prov.key, prov.machine_id, prov.commit) == (
        str(p), 1, "s:opt-125m:zo2:fp16:b1:s2048", "m1", "abc1234")
    assert prov.cite().startswith(f"{p}:1 [s:opt-125m:zo2:fp16:b1:s2048] @abc1234")
    assert "(unknown)" in evidence.provenance(mem.iloc[1]).cite()
    assert ev.select(quantity="tokens_per_s", model="opt-125m")["value"].iloc[0] == pytest.approx(2048 / 0.1)
    assert ev.select(quantity="energy_per_token")["value"].iloc[0] == pytest.approx(10.0 / (5 * 2048))
    assert ev.select(quantity="offloaded_blocks")["value"].iloc[0] == 12
    assert ev.machines() == ["m1"] and ev.warnings == []


def test_damaged_lines_files_and_unknown_schemas_are_named_and_left_out(tmp_path, capsys):
    p = write(tmp_path, [row(), row(model="opt-350m", schema=2)])
    with open(p, "a") as f:
        f.write('{"schema_version": 1, "kind": "sweep_cell", "key": "torn"\n')
    bad = tmp_path / "bench-step" / "m1" / "broken.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    other = tmp_path / "s" / "m1" / "other.json"
    other.write_text(json.dumps({"schema_version": 1, "kind": "mystery"}))
    ev = evidence.load(tmp_path)
    err = capsys.readouterr().err
    assert f"{p}:2: skipping a record of schema_version 2" in err
    assert f"{p}:3: skipping a line that is not JSON" in err
    assert f"{bad}: skipping a file that is not JSON" in err
    assert "kind 'mystery'" in err
    assert len(ev.warnings) == 4 and all(w.startswith("zo2bench: warning: ") for w in ev.warnings)
    assert set(ev.table["model"].dropna()) == {"opt-125m"}       # the good row is kept


def test_archive_folders_are_skipped_and_later_rows_supersede(tmp_path):
    write(tmp_path, [row(nvml=1e9)], name="20260101T000000Z.jsonl")
    write(tmp_path, [row(nvml=2e9)], name="20260102T000000Z.jsonl")
    write(tmp_path / "s" / "m1" / "archive", [row(nvml=9e9)], series="s", machine="m1")
    ev = evidence.load(tmp_path, quiet=True)
    assert not any("archive" in f.parts for f in ev.files)
    mem = ev.select(quantity="gpu_memory", view="nvml_process")
    assert list(mem["value"]) == [2e9]
    assert len(ev.select(latest=False, quantity="gpu_memory", view="nvml_process")) == 2


def test_a_failed_rerun_supersedes_the_earlier_success(tmp_path):
    write(tmp_path, [row(), row(status="oom")])
    ev = evidence.load(tmp_path, quiet=True)
    assert set(ev.select()["quantity"]) == {"fits"} and ev.select()["value"].iloc[0] == 0


def test_no_results_gives_an_empty_table(tmp_path):
    ev = evidence.load(tmp_path / "nothing", quiet=True)
    assert len(ev.table) == 0 and ev.machines() == []
    (v,) = verdicts.judge(claim(), ev)
    assert (v.verdict, v.machine_id) == (UNTESTED, None) and v.needs


# -- rules at their edges ------------------------------------------------------------------------------
@pytest.mark.parametrize("measured, verdict", [(1.0999e9, HOLDS), (1.1001e9, FAILS), (0.2e9, HOLDS)])
def test_memory_ceiling_edge(tmp_path, measured, verdict):
    write(tmp_path, [row(nvml=measured)])
    v = one(claim(value=1.0), evidence.load(tmp_path, quiet=True))
    assert (v.verdict, v.rule.name, v.basis) == (verdict, "memory-ceiling", "measured")
    assert v.ratio == pytest.approx(measured / 1e9)
    assert v.measured[0].provenance[0].line == 1


@pytest.mark.parametrize("measured, verdict", [(0.8501e9, HOLDS), (1.1499e9, HOLDS), (0.8499e9, FAILS),
                                               (1.1501e9, FAILS)])
def test_memory_point_edge(tmp_path, measured, verdict):
    write(tmp_path, [row(nvml=measured)])
    assert one(claim(sense="point"), evidence.load(tmp_path, quiet=True)).verdict == verdict


def test_the_gb_reading_flips_a_verdict_and_both_are_shown(tmp_path):
    # 2 GB ceiling + 10%: 2.2e9 bytes read as GB, 2.36e9 read as GiB; 2.3e9 measured lies between
    write(tmp_path, [row(nvml=2.3e9)])
    ev = evidence.load(tmp_path, quiet=True)
    v = one(claim(value=2.0), ev)
    assert (v.reading, v.verdict, v.other_reading) == ("decimal", FAILS, ("binary", HOLDS))
    b = one(claim(value=2.0), ev, reading="binary")
    assert (b.verdict, b.other_reading, b.claimed) == (HOLDS, ("decimal", FAILS), 2 * 2**30)
    far = one(claim(value=20.0), ev)
    assert far.other_reading is None                         # both readings agree: shown once
    assert units.DEFAULT_READING == "decimal"


def test_speed_floor_and_hardware_bound_claims(tmp_path):
    write(tmp_path, [row(step=0.1)])                         # 20,480 tokens/s
    ev = evidence.load(tmp_path, quiet=True)
    floor = claim(quantity="tokens_per_s", unit="tokens/s", sense="floor", view=None, value=22_000)
    assert one(floor, ev).verdict == HOLDS                   # 20,480 >= 22,000 x 0.9 = 19,800
    assert one(floor.__class__(**{**floor.__dict__, "value": 23_000.0}), ev).verdict == FAILS
    bound = claim(quantity="it_per_s", unit="it/s", sense="point", view=None, value=10.0, gpu="RTX 3090",
                  hardware="4x RTX 3090")
    v = one(bound, ev)
    assert v.verdict == UNTESTED and v.needs == "a run on 4x RTX 3090"
    assert v.measured and v.measured[0].value == pytest.approx(10.0)   # shown for reference


def test_paired_band_holds_in_part_with_mixed_cells(tmp_path):
    rows = []
    for seq, zo2_step in ((512, 0.1), (2048, 0.125)):       # efficiency 1.0 and 0.8 against mezo at 0.1 s
        rows += [row(seq=seq, step=zo2_step), row(mode="mezo", seq=seq, step=0.1)]
    write(tmp_path, rows)
    ev = evidence.load(tmp_path, quiet=True)
    band = claim(quantity="efficiency", unit="%", sense="range", value=(90.0, 95.0), baseline_mode="mezo", view=None,
                 model=None, params_range=(0.0, 1e9))
    v = one(band, ev)
    assert v.verdict == FAILS                               # 1.0 above, 0.8 below [0.882, 0.969]
    assert sorted(m.side for m in v.measured) == ["above", "below"]
    assert "0 of 2 values hold" in v.notes[-1]
    wide = one(band.__class__(**{**band.__dict__, "value": (80.0, 90.0)}), ev)
    assert wide.verdict == PARTIAL                          # 0.8 in, 1.0 above
    assert all(len(m.provenance) == 2 for m in wide.measured)


def test_a_size_class_is_judged_on_the_documents_family_only(tmp_path):
    """qwen2.5-0.5b sits in the < 1B class but is no OPT model: shown in the tables, not judged by the class."""
    write(tmp_path, [row(nvml=1e9), row(model="qwen2.5-0.5b", n_params=494_032_768, nvml=9e9)])
    ev = evidence.load(tmp_path, quiet=True)
    sized = claim(model=None, params_range=(0.0, 1e9), value=2.0)
    v = one(sized, ev)
    assert v.verdict == HOLDS and [m.cell.split()[0] for m in v.measured] == ["opt-125m"]
    named = one(claim(model="qwen2.5-0.5b", value=2.0), ev)   # a claim naming the model still reads its row
    assert named.verdict == FAILS


def test_reduction_pairs_the_same_cell(tmp_path):
    write(tmp_path, [row(nvml=1e9), row(mode="fo-adamw", nvml=4.2e9), row(model="opt-350m", nvml=1e9)])
    c = claim(quantity="reduction", unit="x", sense="point", value=4.0, baseline_mode="fo-adamw")
    v = one(c, evidence.load(tmp_path, quiet=True))
    assert v.verdict == HOLDS and v.measured[0].value == pytest.approx(4.2)
    assert v.measured[0].cell.startswith("opt-125m zo2/fo-adamw")


def test_variants_are_not_matched(tmp_path):
    write(tmp_path, [row(nvml=5e9, budget=12)])
    v = one(claim(), evidence.load(tmp_path, quiet=True))
    assert v.verdict == UNTESTED


def test_largest_model_ratio_is_a_lower_bound_until_a_cell_fails(tmp_path):
    big = dict(model="opt-30b", n_params=30e9)
    rows = [row(), row(**big), row(mode="fo-adamw"), row(mode="fo-adamw", status="infeasible", **big)]
    write(tmp_path, rows)
    ev = evidence.load(tmp_path, quiet=True)
    c = claim(quantity="model_size_ratio", unit="x", sense="floor", value=1000.0, baseline_mode="fo-adamw",
              model=None, view=None)
    v = one(c, ev)
    assert v.measured[0].bound == "lower" and v.measured[0].value == pytest.approx(30e9 / 125_239_296)
    assert v.verdict == UNTESTED                            # 240x < 1000x, but zo2 never failed: inconclusive
    assert one(c.__class__(**{**c.__dict__, "value": 100.0}), ev).verdict == HOLDS


def test_energy_savings_from_gpu_energy_alone_hold_in_part(tmp_path):
    write(tmp_path, [row(energy=5.0), row(mode="fo-adamw", energy=10.0)])
    c = claim(quantity="energy_savings", unit="%", sense="floor", value=(30.0, 40.0), baseline_mode="fo-adamw",
              view=None)
    v = one(c, evidence.load(tmp_path, quiet=True))
    assert v.verdict == PARTIAL and "GPU energy only" in v.note


def test_predictions_are_labelled_and_used_only_where_nothing_was_measured(tmp_path):
    write(tmp_path, [row()])
    ev = evidence.load(tmp_path, quiet=True)
    seen = []

    def predict(c, machine):
        seen.append((c.id, machine))
        return verdicts.Prediction(value=10e9, lo=9e9, hi=11e9, label="memory fit, 95% prediction interval")

    v = one(claim(model="opt-66b", value=12.0), ev, predict=predict)
    assert (v.basis, v.verdict, v.predicted.value) == ("predicted", HOLDS, 10e9)
    assert "predicted, not measured" in v.note and seen == [("t-1", "m1")]
    measured = one(claim(), ev, predict=predict)
    assert measured.basis == "measured" and len(seen) == 1
    untested = one(claim(model="opt-66b", value=12.0), ev)
    assert untested.verdict == UNTESTED and "opt-66b" in untested.needs


def test_verdicts_are_per_machine(tmp_path):
    write(tmp_path, [row(nvml=0.5e9)], machine="m1")
    write(tmp_path, [row(nvml=5e9, machine="m2", gpu="NVIDIA A100")], machine="m2")
    vs = verdicts.judge(claim(), evidence.load(tmp_path, quiet=True))
    assert [(v.machine_id, v.verdict) for v in vs] == [("m1", HOLDS), ("m2", FAILS)]


def test_catalog_and_document_bases():
    ev = evidence.load("/nonexistent", quiet=True)
    (v,) = verdicts.judge(claims.get("002-1.2-opt-350m-params"), ev)
    assert (v.basis, v.verdict, v.machine_id, v.rule.name) == ("catalog", HOLDS, None, "count-nominal")
    (v,) = verdicts.judge(claims.get("000-mem-opt-125m-params"), ev)
    assert v.verdict == FAILS                                # 0.15B against 125.2 M: 20% off
    doc = verdicts.judge(claims.get("002-4.1-opt-125m-simple"), ev)
    assert [(x.basis, x.verdict) for x in doc] == [("document", FAILS), ("none", UNTESTED)]
    assert "convergence" in doc[-1].needs


def test_rules_table_decides_every_measurable_claim():
    for c in claims.load():
        if matching.measurable(c) or matching.from_catalog(c):
            assert verdicts.rule_for(c) is not None, c.id
    names = [r.name for r in verdicts.RULES.values()]
    assert len(names) == len(set(names)) and all(r.text for r in verdicts.RULES.values())


@pytest.mark.skipif(not (REPO / "results").is_dir(), reason="no stored results in this checkout")
def test_stored_results_give_a_verdict_for_every_claim():
    ev = evidence.load(REPO / "results", quiet=True)
    vs = verdicts.judge_all(ev)
    assert {v.claim_id for v in vs} == {c.id for c in claims.load()}
    assert {v.verdict for v in vs} <= set(verdicts.VERDICTS)
    for v in vs:
        assert v.verdict != UNTESTED or v.needs, v.claim_id
        for m in v.measured:
            assert all(p.file.startswith(str(REPO / "results")) and p.key for p in m.provenance) or v.basis == "catalog"
    frame = verdicts.frame(vs)
    assert len(frame) == len(vs) and set(frame["verdict"]) <= set(verdicts.VERDICTS)
