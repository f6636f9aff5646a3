"""The regression check, step by step: what `nox -s regression` runs after the GPU test tier.

    python -m zo2bench.regression.session                         # A/B against the baseline's commit, then the baseline
    python -m zo2bench.regression.session --base origin/main      # A/B against that commit instead
    python -m zo2bench.regression.session --no-ab                 # step time against the stored rows (no A/B)
    python -m zo2bench.regression.session --update-baseline       # store this run as the class's baseline
    ZO2BENCH_REGRESSION_BASE=origin/main python -m zo2bench.regression.session

1. The regression series (experiments/regression.toml; profile gpu with CUDA, else cpu) as an A/B of HEAD
   against a base commit (ab.py): --base, else the stored baseline's own commit when time is gated and git
   has it. An A/B is the time check because a stored baseline comes from another job, often another VM of
   the class: on two H100 VMs the launch-bound opt-125m zo2 batch-1 cell took 15.6 and 33.5 ms a step with
   unchanged code, while the GPU-bound cells agreed within 0.2% (docs/regression.md). Without --base and
   with --no-ab, --update-baseline, no baseline yet, uncommitted changes (an A/B runs commits), no git
   that has the baseline's commit, or a CPU class (time is not gated there): a plain sweep of the
   working tree, its step time against the stored rows.
2. This run against results/baselines/<hardware class>/: status, memory and digest, and step time when
   there was no A/B (with one, the A/B is the time check: a stored baseline may come from another runner
   of the class, at another time of day). With no baseline for the class it says so and stores this run
   (not a run of a tree with changes, nor one whose A/B found a regression).
3. The pytest-benchmark microbenchmarks with --benchmark-compare-fail: against the base commit's, run in
   the same job, after an A/B; else against those stored beside the baseline.
4. Everything under --out (default .regression/<UTC>/): the rows, each comparison as text, markdown and
   JSON, and summary.md for $GITHUB_STEP_SUMMARY.

Step time and the microbenchmarks are gated with a GPU only (--time-gate auto): on a CPU class, this
project's shared CI machines, the same commit's step times moved tenfold minutes apart; they are shown.
Exit status: 1 when the A/B, the baseline comparison or the microbenchmarks found a regression (with
--update-baseline the baseline comparison is shown and does not fail the run), 2 on bad input, else 0.
A baseline names a clean commit: a run from a working tree with changes is not stored.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from zo2bench.errors import UserError
from zo2bench.regression import baseline as store
from zo2bench.regression import hwclass
from zo2bench.regression.compare import CHECKS, Gates, compare, load_side
from zo2bench.regression.render import render

MICROBENCH_FILES = ("benchmarks/test_microbench.py", "tests/test_microbench.py")  # the first that exists


@dataclass
class Options:
    base: str | None = None                  # commit for the A/B (default $ZO2BENCH_REGRESSION_BASE, else the
                                             # stored baseline's commit when time is gated)
    ab: bool = True                          # False (--no-ab): no A/B unless --base; time against stored rows
    update_baseline: bool = False            # store this run as the hardware class's baseline
    profile: str | None = None               # of the experiment; default gpu with CUDA, else cpu
    experiment: str = "experiments/regression.toml"
    baselines: str = "results/baselines"     # one folder per hardware class below it
    out: str | None = None                   # default .regression/<UTC>
    microbench: str | None = None            # the pytest-benchmark file; default the first of MICROBENCH_FILES
    microbench_fail: str = "median:10%"      # --benchmark-compare-fail; microbenchmarks run seconds, not minutes
    time_gate: str = "auto"                  # on | off | auto: on with a GPU; off on a CPU class (shared CI
                                             # runners: the same commit's step time moved 10x minutes apart)
    gates: Gates = dataclasses.field(default_factory=Gates)


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m zo2bench.regression.session", description=__doc__.split("\n")[0])
    p.add_argument("base_ref", nargs="?", metavar="BASE", help="the same as --base")
    p.add_argument("--base", help="A/B of HEAD against this commit (default $ZO2BENCH_REGRESSION_BASE)")
    p.add_argument("--no-ab", action="store_true",
                   help="without --base, no A/B against the baseline's commit: step time against its stored rows")
    p.add_argument("--update-baseline", action="store_true", help="store this run as the class's baseline")
    p.add_argument("--profile", help="profile of the experiment (default gpu with CUDA, else cpu)")
    p.add_argument("--experiment", default=Options.experiment)
    p.add_argument("--baselines", default=Options.baselines, help="folder of the stored baselines")
    p.add_argument("--out", help="folder for this run's rows and comparisons (default .regression/<UTC>)")
    p.add_argument("--microbench", help=f"pytest-benchmark file, or 'none' (default: {' or '.join(MICROBENCH_FILES)})")
    p.add_argument("--microbench-fail", default=Options.microbench_fail, help="--benchmark-compare-fail value")
    p.add_argument("--time-gate", choices=("auto", "on", "off"), default="auto",
                   help="gate step time and the microbenchmarks (auto: with a GPU only; shown either way)")
    p.add_argument("--time-pct", type=float, default=Gates.time_pct, help="step-time gate in percent")
    p.add_argument("--memory-pct", type=float, default=Gates.memory_pct, help="memory gate in percent")
    p.add_argument("--memory-floor-mib", type=float, default=Gates.memory_floor_mib, help="memory gate floor, MiB")
    a = p.parse_args(argv)
    if a.base and a.base_ref and a.base != a.base_ref:
        p.error(f"two base commits given: --base {a.base} and {a.base_ref}")
    a.base = a.base or a.base_ref or os.environ.get("ZO2BENCH_REGRESSION_BASE") or None
    gates = Gates(memory_pct=a.memory_pct, memory_floor_mib=a.memory_floor_mib, time_pct=a.time_pct)
    return Options(a.base, not a.no_ab, a.update_baseline, a.profile, a.experiment, a.baselines, a.out, a.microbench,
                   a.microbench_fail, a.time_gate, gates)


def say(*parts, stream=None) -> None:
    print("zo2bench regression:", *parts, file=stream or sys.stderr, flush=True)


def this_machine() -> dict:
    import torch

    from zo2bench.probes.fingerprint import fingerprint

    return fingerprint("cuda:0" if torch.cuda.is_available() else None)


def _checks(opts: Options, gate_time: bool) -> tuple:
    return CHECKS if gate_time else tuple(c for c in CHECKS if c != "time")


def run_series(opts: Options, out: Path, gate_time: bool = True) -> tuple[Path, dict | None]:
    """The series once (no base) or as an A/B; returns the candidate's rows folder and the A/B comparison."""
    if opts.base:
        from zo2bench.regression.ab import run_ab

        run = run_ab(".", opts.base, "HEAD", experiment=opts.experiment, profile=opts.profile, out_dir=out / "ab")
        plan = run["plan"]
        report = compare(load_side(run["base_dir"], f"base {opts.base} ({plan['base']['commit'][:12]})"),
                         load_side(run["head_dir"], f"HEAD ({plan['head']['commit'][:12]})"),
                         dataclasses.replace(opts.gates, checks=_checks(opts, gate_time)))
        report["ab"] = plan
        return run["head_dir"], report
    from zo2bench.experiments.runner import sweep
    from zo2bench.experiments.spec import load

    # a working tree with changes runs (checking them is what the session is for); its rows say so
    sweep(load(opts.experiment), profile=opts.profile, results_dir=out / "run", force=True, dirty_code="allow")
    return out / "run", None


def _pytest_benchmark(path, storage: Path, json_out: Path, extra: list[str], log_out: Path, tree: Path | None = None,
                      commit: str | None = None) -> tuple[int, str]:
    """pytest-benchmark on one file, in `tree` (another commit's worktree) or here; (exit status, its output)."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path), "--benchmark-only",
            f"--benchmark-storage=file://{storage.resolve()}", f"--benchmark-json={json_out.resolve()}",
            "--benchmark-columns=median,iqr,rounds", *extra]
    from zo2bench.regression.ab import commit_env

    env = commit_env(tree, commit) if tree is not None else None  # that commit's code, named in its records
    say("microbenchmarks" + (f" of {commit[:12]}" if commit else "") + ":", " ".join(args[2:]))
    proc = subprocess.run(args, capture_output=True, text=True, cwd=tree, env=env)
    log = proc.stdout + proc.stderr
    log_out.write_text(log)
    sys.stderr.write(proc.stdout)
    return proc.returncode, log


def _verdict(rc: int, log: str, ok_note: str, log_path: Path) -> dict:
    if rc == 0:
        return {"status": "ok", "note": ok_note}
    if "Performance has regressed" in log:
        lines = [ln.strip() for ln in log.splitlines() if "compare-fail" in ln or "Field " in ln]
        return {"status": "regressed", "note": "; ".join(lines[:6]) or f"see {log_path}"}
    return {"status": "failed", "note": f"pytest exited {rc}; see {log_path}"}


def run_microbench(opts: Options, storage: Path, out: Path, compare_to_stored: bool, save_as: str | None,
                   gate: bool = True, ab_base: str | None = None) -> dict:
    """pytest-benchmark on the microbenchmark file; {"status": ok|regressed|failed|skipped, "note"}.

    With `ab_base` (the A/B's base commit) the base's microbenchmarks run first, from its worktree, and
    this tree's are compared with them: both in this job, as the A/B's step times are. Else this tree's
    are compared with those stored beside the baseline."""
    path = opts.microbench or next((f for f in MICROBENCH_FILES if Path(f).is_file()), None)
    if path in (None, "none"):
        return {"status": "skipped", "note": "no microbenchmark file"}
    fail = [f"--benchmark-compare-fail={opts.microbench_fail}"] if gate else []
    if ab_base:
        import tempfile

        from zo2bench.regression import ab

        here = out / "microbench-ab"
        with tempfile.TemporaryDirectory(prefix="zo2bench-mb-") as tmp, \
                ab.checkout(ab.repo_root("."), ab_base, Path(tmp) / "base") as tree:
            base_file = next((f for f in MICROBENCH_FILES if (tree / f).is_file()), None)
            if base_file is None:
                return {"status": "skipped", "note": f"the base commit {ab_base[:12]} has no microbenchmark file"}
            rc, log = _pytest_benchmark(tree / base_file, here, out / "microbench-base.json", ["--benchmark-save=base"],
                                        out / "microbench-base.log", tree=tree, commit=ab_base)
        if rc != 0:
            return _verdict(rc, log, "", out / "microbench-base.log")
        rc, log = _pytest_benchmark(path, here, out / "microbench.json", ["--benchmark-compare", *fail],
                                    out / "microbench.log")
        note = (f"within {opts.microbench_fail} of the base commit {ab_base[:12]}, run in this job" if gate else
                "compared with the base commit's (not gated on this machine)")
        return _verdict(rc, log, note, out / "microbench.log")
    extra = (["--benchmark-compare", *([] if save_as else fail)] if compare_to_stored else []) + \
            ([f"--benchmark-save={save_as}"] if save_as else [])
    rc, log = _pytest_benchmark(path, storage, out / "microbench.json", extra, out / "microbench.log")
    note = ("no stored run to compare with" if not compare_to_stored else
            "compared (not gated: storing a new baseline)" if save_as else
            "compared (not gated: time is not gated on this machine)" if not gate else
            f"within {opts.microbench_fail} of the stored run")
    return _verdict(rc, log, note, out / "microbench.log")


def _has_stored_microbench(storage: Path) -> bool:
    try:
        from pytest_benchmark.utils import get_machine_id
    except ImportError:
        return False
    return any((storage / get_machine_id()).glob("[0-9][0-9][0-9][0-9]_*.json"))


def _baseline_commit(meta: dict, dirty: bool = False) -> str | None:
    """The stored baseline's commit, for an A/B against it; None (said why) where git cannot check it out,
    or where the working tree has uncommitted changes, which an A/B of commits would leave out."""
    from zo2bench.regression import ab

    if dirty:
        say("uncommitted changes: no A/B (it runs commits, and would leave them out); this working tree runs, "
            "its step time against the stored rows (commit, or give --base, for an A/B)")
        return None
    try:
        commit = ab.resolve(ab.repo_root("."), meta["commit"])
    except UserError as e:
        say(f"no A/B against the baseline's commit {meta['commit'][:12]} ({e}): step time is compared with the "
            "stored rows, which may come from another runner of the class (launch-bound cells move most)")
        return None
    say(f"A/B against the stored baseline's commit {commit[:12]}, run in this job (the time check; --no-ab: none)")
    return commit


def write_report(report: dict, out: Path, name: str) -> None:
    for fmt, ext in (("text", "txt"), ("markdown", "md"), ("json", "json")):
        (out / f"{name}.{ext}").write_text(render(report, fmt))


def run(opts: Options, series=run_series, microbench=run_microbench, fp: dict | None = None) -> int:
    """The steps above; `series` and `microbench` are the real runners unless a test injects others."""
    fp = fp or this_machine()
    cls = hwclass.hardware_class(fp)
    if opts.update_baseline and not opts.base and (fp.get("git_dirty") or not fp.get("git_commit")):
        raise UserError("--update-baseline: the working tree has uncommitted changes (or no commit is known), and a "
                        "baseline names the commit that made it; commit first (or give --base to run commits)")
    out = Path(opts.out or Path(".regression") / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    out.mkdir(parents=True, exist_ok=True)
    gate_time = opts.time_gate == "on" or (opts.time_gate == "auto" and bool(cls.get("gpu")))
    bdir = store.baseline_dir(opts.baselines, cls)
    meta = store.load_meta(bdir)
    say(f"hardware class {hwclass.class_name(cls)}: {hwclass.describe(cls)}")
    say(f"baseline: {bdir} (commit {meta['commit'][:12]}, stored {meta['stored_utc']})" if meta else
        f"baseline: none for this hardware class under {bdir}; this run will be stored as one")
    if meta and opts.profile and meta.get("profiles") and opts.profile not in meta["profiles"]:
        raise UserError(f"the baseline in {bdir} is of profile {', '.join(meta['profiles'])}, this run would be "
                        f"'{opts.profile}'; give that profile, or --update-baseline to replace it")

    if not opts.base and opts.ab and gate_time and meta and not opts.update_baseline:
        opts = dataclasses.replace(opts, base=_baseline_commit(meta, dirty=bool(fp.get("git_dirty"))))
    if not gate_time:
        say("step time and the microbenchmarks are shown, not gated (--time-gate "
            f"{opts.time_gate}{': no GPU' if opts.time_gate == 'auto' else ''})")
    candidate, ab_report = series(opts, out, gate_time)
    sections, failed = [], []
    if ab_report is not None:
        write_report(ab_report, out, "ab-comparison")
        sys.stdout.write(render(ab_report, "text") + "\n")
        sections.append(render(ab_report, "markdown").replace("zo2bench compare", "A/B against the base commit", 1))
        failed += ["the A/B"] if ab_report["exit_status"] else []

    commit = None
    if opts.update_baseline:  # asked for: a run that cannot be a baseline is an error (exit 2)
        commit = store.check_storable(candidate, cls)
    elif meta is None:  # the first baseline of a class: not from a tree with changes, nor over a failed A/B
        try:
            if failed:
                raise UserError("the A/B against the base found a regression; store one with --update-baseline")
            commit = store.check_storable(candidate, cls)
        except UserError as e:
            say(f"not stored as the baseline: {e}")
            sections.append(f"**Baseline not stored:** {e}\n")
    if meta is not None:
        checks = _checks(opts, gate_time and ab_report is None)  # with an A/B, the A/B is the time check
        report = compare(load_side(bdir, f"stored baseline (commit {meta['commit'][:12]})"),
                         load_side(candidate, "this run"), dataclasses.replace(opts.gates, checks=checks))
        write_report(report, out, "baseline-comparison")
        sys.stdout.write(render(report, "text") + "\n")
        sections.append(render(report, "markdown").replace("zo2bench compare", "Against the stored baseline", 1))
        if report["exit_status"] and not opts.update_baseline:
            failed.append("the baseline comparison")

    storage = store.microbench_dir(bdir)
    mb = microbench(opts, storage, out, compare_to_stored=_has_stored_microbench(storage),
                    save_as=commit[:12] if commit else None, gate=gate_time,
                    ab_base=(ab_report or {}).get("ab", {}).get("base", {}).get("commit"))
    sections.append(f"### Microbenchmarks: {mb['status']}\n\n{mb.get('note', '')}\n")
    if mb["status"] in ("regressed", "failed"):
        failed.append(f"the microbenchmarks ({mb['status']})")

    if commit:
        meta_new = store.store(candidate, bdir, cls, source="zo2bench.regression.session" +
                               (f" (A/B head against {opts.base})" if opts.base else ""))
        store.prune_microbench(bdir)
        say(f"stored this run as the baseline of {hwclass.class_name(cls)}: {bdir} (commit {meta_new['commit'][:12]}, "
            f"{meta_new['row_count']} rows); commit that folder to keep it")
    verdict = ("REGRESSION in " + " and ".join(failed)) if failed else "no regression"
    summary = [f"## zo2bench regression: {verdict}", "", f"Hardware class `{hwclass.class_name(cls)}`: "
               f"{hwclass.describe(cls)}", ""] + sections
    if meta is None:
        summary.insert(4, f"No baseline for this hardware class under `{bdir}` before this run.\n")
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    say(f"{verdict}; comparisons and summary.md under {out}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(argv))
    except UserError as e:
        print(f"zo2bench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zo2bench regression: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
