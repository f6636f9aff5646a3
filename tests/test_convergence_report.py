"""The report's convergence page: it renders without rows (saying what was not measured), and from rows whose
law is known it shows the curves, the zo2/mezo parity, the choice on dev, the to-target table, the fit beside
formula 4.1, and the verdicts, which the index then lists instead of "not tested here"."""
import contextlib
import io
import json
import math
import shutil

import pytest
from synthetic_results import MACHINE, _fingerprint, write
from test_convergence import _curve, _row

from zo2bench import results
from zo2bench.cli import main
from zo2bench.convergence import ladder

SERIES = "convergence_scaling"


def _render(root):
    out, err = root / "reports", io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["report", "--results", str(root / "results"), "--out", str(out)]) == 0, err.getvalue()
    return out


def _conv_rows(results_dir, machine=MACHINE, device=None):
    """zo2 reaches 0.81 (90% of fo-adamw's 0.9) in 0.01 x sqrt(n) / lr steps at twice fo-adamw's time on the
    OPT-125M shape; mezo runs zo2's lr 1e-5 with the same curve; fo-adamw at lr 1e-4 is the better on dev."""
    f = results_dir / SERIES / machine / "20260101T020000Z.jsonl"
    for model in ("ladder-64x2", "ladder-256x6", "ladder-768x12"):
        n = ladder.get(model).n_params()
        for seed in (0, 1):
            rows = [_row(model, "fo-adamw", lr, seed, _curve(50, final, 0.01), final)
                    for lr, final in ((1e-4, 0.9), (1e-3, 0.85))]
            for lr in (1e-5, 1e-4):
                reach = max(2, round(0.01 * math.sqrt(n) / lr * (1 + 0.02 * seed)))
                curve = _curve(reach, 0.9 if lr == 1e-5 else 0.85, 2 * 50 * 0.01 / reach)
                rows.append(_row(model, "zo2", lr, seed, curve, 0.855 if lr == 1e-5 else 0.5, 1e-3))
                if lr == 1e-5:
                    rows.append(_row(model, "mezo", lr, seed, curve, 0.855, 1e-3))
                    rows[-1]["finetune"]["final_params_sha256"] = rows[-2]["finetune"]["final_params_sha256"]
            for r in rows:
                r.update(series=SERIES, machine_id=machine, key=r["key"].replace("conv:", f"{SERIES}:"),
                         fingerprint=_fingerprint())
                if device:
                    r["config"]["device"] = device
                results.append_row(f, r)


@pytest.fixture(scope="module")
def with_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv-report")
    write(root / "results")
    _conv_rows(root / "results")
    return _render(root)


def test_gpu_convergence_rows_beside_the_memory_series_stay_out_of_its_fits(tmp_path):
    """The ladder's models are not in the catalog: a GPU machine's convergence rows must not reach the
    one-GPU fits of the memory and throughput series (they once stopped `zo2bench report` there)."""
    write(tmp_path / "results")
    _conv_rows(tmp_path / "results", device="cuda:0")
    out = _render(tmp_path)
    assert "ladder-64x2" in (out / f"{SERIES}.md").read_text()
    assert "ladder-" not in (out / "memory_scaling.md").read_text()


@pytest.fixture(scope="module")
def without_rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv-none")
    write(root / "results", grid=False)
    return _render(root)


def test_without_convergence_rows_the_page_says_not_measured_and_checks_the_formula(without_rows):
    md = (without_rows / f"{SERIES}.md").read_text()
    assert (without_rows / f"{SERIES}.html").is_file()
    assert "Not measured: no convergence_scaling rows" in md and "zo2bench sweep experiments/convergence" in md
    assert "| opt-125m | 125M | 10,000 | 20,000 | 1.12e+14 |" in md       # 4.1's formula against its table
    assert md.count("not tested here") == 3 and "Steps, time and energy to target" not in md.split("##")[1]
    assert f"[{SERIES}]({SERIES}.md)" in (without_rows / "index.md").read_text()   # the page is in the nav


def test_with_rows_every_part_of_the_page_is_drawn(with_rows):
    md = (with_rows / f"{SERIES}.md").read_text()
    assert "Not measured" not in md
    assert f"## {MACHINE}, profile gpu" in md and "### classification, k = 16" in md
    for fig in ("curves", "curves-time", "parity"):
        assert f"](figures/{SERIES}-{MACHINE}-gpu-classification-k16-{fig}.svg)" in md
        assert (with_rows / "figures" / f"{SERIES}-{MACHINE}-gpu-classification-k16-{fig}.svg").is_file()
    assert f"figures/{SERIES}-{MACHINE}-gpu-law.svg" in md
    # zo2 and mezo: the same curve for every pair (3 models x 2 seeds)
    assert "| ladder-64x2 | classification | 16 | 2 | 2 | 2 | 2 |" in md
    # the choice on dev: fo-adamw's lr 1e-4 (0.9) over 1e-3 (0.85)
    assert "| ladder-64x2 | classification | 16 | fo-adamw | 0.0001 | – | 2 | 90.0% ± 0.0 | 0 | chosen |" in md
    # to target: fo-adamw needs 50 steps; zo2 at its chosen lr 1e-5 takes 0.01 x sqrt(n) / 1e-5 steps
    n = ladder.get("ladder-64x2").n_params()
    steps = sorted(round(0.01 * math.sqrt(n) / 1e-5 * (1 + 0.02 * s)) for s in (0, 1))
    assert f"| 2/2 | {sum(steps) / 2:,.0f} |" in md or f"| 2/2 | {sum(steps) / 2:.3g} |" in md
    assert "| 2/2 | 50 | 0.5 | n/m |" in md                 # no GPU energy in these rows: said, not zero
    # the fit finds 4.1's exponents and the document's table is beside it
    law = md.split("formula 4.1 fitted")[1]
    assert "| log_n | ols-reached | 0.5" in law and "| log_lr | ols-reached | -1" in law
    assert "| opt-175b | 175B | 1e-07 | 420,000 |" in law and "censored-ml" not in law   # nothing censored
    # verdicts: 4.2 holds (0.855 / 0.9 = 0.95), 2.2's 2x on the OPT-125M shape holds in part (a shape, not OPT)
    v = md.split("Claims of sections 4.1, 4.2 and 2.2")[1]
    assert "| 002-4.2-accuracy | 002 §4.2 | accuracy ratio | 0.85–1 fraction | holds |" in v
    assert "| 002-2.2-opt-125m-slowdown |" in v and "holds in part" in v


def test_the_index_lists_the_convergence_verdicts_instead_of_not_tested(with_rows, without_rows):
    def line(out, claim):
        return [ln for ln in (out / "index.md").read_text().splitlines() if ln.startswith(f"| {claim} |")]

    assert all("not tested here" in ln for ln in line(without_rows, "002-4.2-accuracy"))
    got = line(with_rows, "002-4.2-accuracy")
    assert got and all("| holds |" in ln for ln in got)


def test_the_page_renders_the_same_bytes_twice(with_rows, tmp_path):
    root = with_rows.parent
    shutil.copytree(root / "results", tmp_path / "results")
    again = _render(tmp_path)
    for name in (f"{SERIES}.md", f"{SERIES}.html"):
        assert (again / name).read_bytes() == (with_rows / name).read_bytes()


def test_a_profile_without_mezo_says_so_in_a_line_not_an_empty_table(tmp_path):
    """A profile of zo2 and fo-adamw only (gpu-long) once rendered a table with no columns ("|  |")."""
    write(tmp_path / "results", grid=False)
    _conv_rows(tmp_path / "results")
    f = tmp_path / "results" / SERIES / MACHINE / "20260101T020000Z.jsonl"
    lines = [ln for ln in f.read_text().splitlines() if json.loads(ln)["cell"]["mode"] != "mezo"]
    assert lines and len(lines) < len(f.read_text().splitlines())
    f.write_text("\n".join(lines) + "\n")
    md = (_render(tmp_path) / f"{SERIES}.md").read_text()
    assert "no mezo run at a zo2 run's point and seed" in md and "|  |\n|---|\n" not in md


def test_a_run_whose_reference_learned_nothing_shows_no_target_instead_of_reached_at_step_0():
    # QA on the H100 (gpu-qa): fo-adamw ended at F1 0, so its 0.9 x target was 0 and every run "reached" it
    # at step 0; the steps table must not read as if the task had been learned at once.
    import pandas as pd

    from zo2bench.report import convergence_tables as ct

    def summ(task):
        return {"model": "ladder-256x6", "n_params": 5.46e6, "task": task, "k": 16, "mode": "zo2", "lr": 1e-5,
                "eps": 1e-3, "seeds": 1, "zero_shot": 0.0, "test_mean": 0.002, "test_std": math.nan,
                "reached": "1/1", "steps_to_target": 0.0, "time_to_target_s": 0.0, "energy_to_target_j": 0.0,
                "max_steps": 3000}
    tg = pd.DataFrame([{"model": "ladder-256x6", "task": "qa", "k": 16, "reference_learned": False},
                       {"model": "ladder-256x6", "task": "generation", "k": 16, "reference_learned": True}])
    table = ct.summary_table(pd.DataFrame([summ("qa"), summ("generation")]), None, ct.unlearned(tg))
    qa, gen = ([c.text for c in r] for r in table.rows)
    assert qa[10:14] == ["–", "no target: the reference learned nothing", "–", "–"]
    assert gen[10:12] == ["1/1", "0"]
