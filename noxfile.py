"""Sessions: `nox -s tests`, `nox -s memory_scaling`, `nox -s throughput_scaling`, `nox -s convergence_scaling`,
`nox -s report`.

Every session runs in one shared virtual environment, .nox/zo2bench (about 1.4 GB, most of it torch),
built on first use with the Python that runs nox. It is reused while nothing it was installed from
changed: pyproject.toml and the torch requirement are hashed into .nox/zo2bench/zo2bench-install.json,
and only a change there (or a missing extra, e.g. the test tools) runs pip again, in the same
environment. So a re-run, e.g. to resume a sweep, starts in seconds. Delete .nox/zo2bench to rebuild it.

The environment installs torch first, pinned, so that pip takes the build already there (on the CPU
machines torch==2.13.0 is a CPU wheel on disk; an unpinned torch would pull several GB of CUDA
packages). ZO2BENCH_TORCH pins another requirement (e.g. "torch==2.11.0" on a GPU machine). The sweeps
pick the gpu profile where CUDA is available and the cpu profile elsewhere; arguments after `--` go to
`zo2bench sweep` (e.g. `nox -s memory_scaling -- --profile cpu --force`) or to pytest.
"""
import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]

TORCH = os.environ.get("ZO2BENCH_TORCH", "torch==2.13.0")
ROOT = Path(__file__).resolve().parent
ENV = ROOT / ".nox" / "zo2bench"  # the one environment every session shares
STAMP = ENV / "zo2bench-install.json"
BIN = ENV / ("Scripts" if os.name == "nt" else "bin")


def _inputs() -> str:
    """What the installed packages come from; a change in either runs pip again."""
    h = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    h.update(f"\n{TORCH}".encode())
    return h.hexdigest()


def _create_venv() -> None:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(ENV)], check=True)


def _env(session, *extras: str) -> dict:
    """The shared environment with zo2bench (editable) and `extras` installed; returns the variables that
    put it first on PATH. Creates it and runs pip only when the stamp says something is missing."""
    ENV.parent.mkdir(parents=True, exist_ok=True)
    python = f"{sys.executable} {sys.version.split()[0]}"
    with open(ENV.parent / "zo2bench.lock", "w") as lock:  # two sessions at once: one installs, one waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = json.loads(STAMP.read_text()) if STAMP.exists() else {}
        if stamp.get("python") != python or not (BIN / "python").exists():
            session.log(f"creating {ENV.relative_to(ROOT)} with {python} (once; every session reuses it)")
            _create_venv()
            stamp = {"python": python}
        if stamp.get("inputs") != _inputs() or not set(extras) <= set(stamp.get("extras", [])):
            want = sorted(set(extras) | (set(stamp.get("extras", [])) if stamp.get("inputs") == _inputs() else set()))
            pip = [str(BIN / "python"), "-m", "pip", "install", "-q"]
            session.run(*pip, TORCH, external=True)  # first, pinned: see the module docstring
            session.run(*pip, "-e", f".[{','.join(want)}]" if want else ".", external=True)
            STAMP.write_text(json.dumps({"python": python, "inputs": _inputs(), "extras": want}))
        else:
            session.log(f"reusing {ENV.relative_to(ROOT)}: pyproject.toml and {TORCH} unchanged since it was set up")
    return {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(ENV)}


@nox.session(venv_backend="none")
def tests(session):
    """Lint, the result tables of README.md and docs/ against the rows behind them, then the test suite
    (CPU; GPU tests are skipped where there is no GPU)."""
    env = _env(session, "test")
    session.run(str(BIN / "ruff"), "check", ".", env=env, external=True)
    session.run(str(BIN / "zo2bench"), "report", "tables", "--check", env=env, external=True)
    session.run(str(BIN / "pytest"), "-q", *session.posargs, env=env, external=True)


def _sweep(session, series):
    env = _env(session)
    session.run(str(BIN / "zo2bench"), "sweep", f"experiments/{series}.toml", *session.posargs, env=env, external=True)


@nox.session(venv_backend="none")
def memory_scaling(session):
    """Series 1: memory against model size (cpu profile on a machine without a GPU)."""
    _sweep(session, "memory_scaling")


@nox.session(venv_backend="none")
def throughput_scaling(session):
    """Series 2: throughput against batch and sequence length."""
    _sweep(session, "throughput_scaling")


@nox.session(venv_backend="none")
def convergence_scaling(session):
    """Series 3: steps, time and energy to a dev target on a pretrained ladder (pretraining cached in
    $ZO2BENCH_CACHE or ~/.cache/zo2bench)."""
    _sweep(session, "convergence_scaling")


@nox.session(venv_backend="none")
def report(session):
    """The reports from results/ into reports/: an index and one page per series, HTML and Markdown
    (arguments after `--` go to `zo2bench report`, e.g. `-- --out /tmp/reports` or `-- tables --check`)."""
    env = _env(session)
    session.run(str(BIN / "zo2bench"), "report", *session.posargs, env=env, external=True)


@nox.session(venv_backend="none")
def regression(session):
    """Regression checks (docs/regression.md): the GPU test tier, the regression series as an A/B against a
    base commit (the time check), the baseline stored for this hardware class, the microbenchmarks.

        nox -s regression                            # A/B against the stored baseline's commit (stored if none)
        nox -s regression -- --base origin/main      # or: -- origin/main, or ZO2BENCH_REGRESSION_BASE=origin/main
        nox -s regression -- --no-ab                 # step time against the stored rows instead
        nox -s regression -- --update-baseline       # store this run as the class's baseline

    Other arguments after `--` go to `python -m zo2bench.regression.session` (its --help lists them).
    Without a GPU: the cpu profile against a CPU class's baseline, step time shown but not gated.
    """
    env = _env(session, "test")
    # Exit status 5: no test selected (a tree without GPU tests); without CUDA the GPU tier is skipped.
    session.run(str(BIN / "pytest"), "-q", "-m", "gpu", env=env, external=True, success_codes=[0, 5])
    session.run(str(BIN / "python"), "-m", "zo2bench.regression.session", *session.posargs, env=env, external=True)
