"""The convergence page of the report (issue 11): curves, the lr/eps choice, steps / time / energy to target,
test metrics over seeds, formula 4.1 fitted and checked, and the verdicts on 4.1, 4.2 and 2.2.

    t = cv.tables("results")                          # analysis/convergence.py (rows of convergence_scaling)
    blocks(t, docs, figs)                             # render.Block list for the page "convergence_scaling"

One section per machine and profile (profiles differ in steps and grids: never mixed), and per data
version where a profile's rows were made on more than one (analysis/convergence.py: "gpu (data v5-42915d5c)").
Without rows the page says the series was not measured, and still shows what needs no row: formula 4.1
against its own table, and the claims as "not tested here". Tables only lay out the analysis's frames: every
number comes from there.
"""
from __future__ import annotations

import math

from zo2bench.report import claims_section
from zo2bench.report import convergence_figures as cf
from zo2bench.report import convergence_tables as ct

SERIES = "convergence_scaling"
HOW = ("`zo2bench sweep experiments/convergence_scaling.toml --profile gpu` (on the GPU machine in pieces: "
       "tools/device_convergence.sh), or `nox -s convergence_scaling`")


def _b(kind, text="", **kw):
    from zo2bench.report.render import Block

    return Block(kind, text, **kw)


def blocks(t: dict, docs, figs) -> list:
    out = [_b("heading", SERIES, level=1),
           _b("text", "Fine-tuning from a pretrained ladder of OPT-shaped models (the suite pretrains them on its "
                      "synthetic language, zo2bench/convergence/) with zo2, mezo, fo-sgd and fo-adamw, every "
                      "learning rate (and eps) of a small grid and several seeds; the grid point of each method "
                      "is chosen on dev, the target is a fraction of fo-adamw's dev metric on the same model and "
                      "task, and test metrics are of the final weights.")]
    runs = t["runs"]
    if not len(runs):
        out.append(_b("text", f"Not measured: no {SERIES} rows with status ok under the results folder. "
                              f"Run {HOW}. Steps, time and energy to target, the fitted law and the accuracy "
                              "ratio are therefore not measured here; what needs no measurement follows."))
    pairs = sorted(set(zip(runs["machine_id"], runs["profile"]))) if len(runs) else []
    for machine, profile in pairs:
        out += _section(t, machine, profile, docs, figs)
    out += _document_blocks(t)
    out += _verdict_blocks(t, docs)
    return out


def _data_note(mine) -> str:
    versions = sorted(mine["data"].unique()) if "data" in mine else []
    return (f" Data: {', '.join(versions)} (the synthetic data's generator version and digest; the digest alone "
            "in rows made before the version was recorded)." if versions else "")


def _section(t, machine, profile, docs, figs) -> list:
    runs = t["runs"]
    mine = runs[(runs["machine_id"] == machine) & (runs["profile"] == profile)]
    gpu = mine["gpu"].dropna().iloc[0] if mine["gpu"].notna().any() else None
    models = list(mine.sort_values("n_params")["model"].unique())
    out = [_b("heading", f"{machine}, profile {profile}", level=2),
           _b("text", f"{len(mine)} fine-tuning runs (ok) on {gpu or 'no GPU'}: {', '.join(models)}; tasks "
                      f"{', '.join(sorted(mine['task'].unique()))}; modes {', '.join(sorted(mine['mode'].unique()))}; "
                      f"seeds {', '.join(str(s) for s in sorted(mine['seed'].unique()))}. "
                      + ct.trust_note(mine) + _data_note(mine))]
    tg = ct.pick(t["targets"], machine, profile)
    for (task, k), _ in mine.groupby(["task", "k"]):
        name = f"{machine}-{profile}-{task}-k{k}"
        out.append(_b("heading", f"{task}, k = {k}", level=3))
        out.append(figs(f"{name}-curves", f"Dev {mine[mine['task'] == task]['metric'].iloc[0]} against steps, "
                        f"{task}, k = {k}, one panel per model: each method at its chosen grid point (thin: "
                        "seeds, thick: their mean), the target dashed.", cf.dev_curves, t, machine, task, int(k),
                        "step", profile))
        out.append(figs(f"{name}-curves-time", "The same runs against training wall time (evaluation excluded).",
                        cf.dev_curves, t, machine, task, int(k), "train_s", profile))
        if ct.has_parity(t, machine, profile, task, k):
            out.append(figs(f"{name}-parity", "zo2 (solid) and mezo (dashed, on top) at the same lr, eps and seed: "
                            "one curve where they coincide, as they must (the same perturbations and updates; "
                            "zo2 only moves the blocks between host and GPU).", cf.zo2_and_mezo, t, machine,
                            profile, task, int(k)))
    out.append(_b("table", table=ct.targets_table(tg)))
    out.append(_b("table", table=ct.summary_table(ct.pick(t["summary"], machine, profile), docs,
                                                        ct.unlearned(tg))))
    par = ct.pick(t["parity"], machine, profile)
    out.append(_b("table", table=ct.parity_table(par)) if len(par) else
               _b("text", "zo2 against mezo: no mezo run at a zo2 run's point and seed in this profile."))
    out += [_b("details", "The lr / eps grid of every method and the choice on dev",
               blocks=[_b("table", table=ct.selection_table(ct.pick(t["selection"], machine, profile)))])]
    fit = ct.pick(t["fit"], machine, profile)
    used = fit[fit["used"] & fit["identified"]] if len(fit) else fit
    out.append(_b("heading", "Iterations to target: formula 4.1 fitted", level=3))
    if len(fit):
        out.append(figs(f"{machine}-{profile}-law", "Zeroth-order steps to target against parameters, per lr: "
                        "measured runs, runs that never reached the target by their last evaluation (triangles: "
                        "lower bounds), the fitted law where there is one (solid over the sizes measured), and the "
                        "4.1 table's simple-task iterations (hollow squares).", cf.steps_to_target, t, machine,
                        profile))
    if not len(used):
        out.append(_b("text", "No fit: fewer than two zeroth-order runs reached their target after step 0 "
                              + ct.fit_notes(t, machine, profile) + ", and the fit that counts the others as "
                              "censored gives no estimate with intervals (the table's notes say why)."
                              if len(fit) else "No fit: fewer than two zeroth-order runs reached their target "
                              "after step 0 " + ct.fit_notes(t, machine, profile) + "."))
    if len(fit):
        out.append(_b("table", table=ct.fit_table(fit)))
    if len(used):
        out.append(_b("table", table=ct.predictions_table(ct.pick(t["predictions"], machine, profile))))
    return out


def _document_blocks(t) -> list:
    doc = t["document_check"]
    k_over_lr = doc["implied_k_over_lr"]
    return [_b("heading", "Formula 4.1 against its own table", level=2),
            _b("text", "Document 002's 4.1: iterations = k × sqrt(n) × (1/lr) × task complexity, with k ≈ 1000 and "
                       f"lr ≈ 1e-7, i.e. k/lr = 1e10. Its table implies k/lr between {k_over_lr.min():.3g} and "
                       f"{k_over_lr.max():.3g}, {_orders(1e10 / k_over_lr.median())} orders of magnitude less; the "
                       f"table's own exponent of n is {doc.attrs['table_exponent_of_n']:.2f} (the formula's: 0.5), "
                       "and every complex-task row is twice the simple one (the formula's complexity 2)."),
            _b("table", table=ct.document_table(doc))]


def _orders(x: float) -> str:
    return f"{math.log10(x):.1f}" if x > 0 else "–"


def _verdict_blocks(t, docs) -> list:
    vs = t.get("verdict_list") or []
    out = [_b("heading", "Claims of sections 4.1, 4.2 and 2.2", level=2)]
    if not docs.available or not vs:
        return out + [_b("text", f"No verdicts: {docs.missing or 'none could be made'}.")]
    if any(v.machine_id is not None for v in vs):
        where = ("Judged on the runs above, per machine and profile (a profile's name is the first note); the "
                 "index lists them with each machine's other verdicts.")
    else:
        where = "Not tested here: there are no convergence rows."
    out.append(_b("text", f"{where} 4.2 compares the test metric of zo2 (or mezo) with fo-adamw's at each "
                          "method's chosen point; 2.2's slowdown is read as training time to the target."))
    out.append(_b("table", table=claims_section.verdict_table("Verdicts on the convergence claims", vs, docs)))
    return out
