"""Sessions: `nox -s tests`, `nox -s memory_scaling`, `nox -s throughput_scaling`.

Every session installs torch first, pinned, so that pip takes the build already there (on the CPU
machines torch==2.13.0 is a CPU wheel on disk; an unpinned torch would pull several GB of CUDA
packages). ZO2BENCH_TORCH pins another requirement (e.g. "torch==2.11.0" on a GPU machine). The sweeps
pick the gpu profile where CUDA is available and the cpu profile elsewhere; arguments after `--` go to
`zo2bench sweep` (e.g. `nox -s memory_scaling -- --profile cpu --force`).
"""
import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests"]

TORCH = os.environ.get("ZO2BENCH_TORCH", "torch==2.13.0")


def _install(session, *extras):
    if session.venv_backend != "none":
        session.install(TORCH)
        session.install("-e", f".[{','.join(extras)}]" if extras else ".")


@nox.session
def tests(session):
    """The test suite (CPU; GPU tests are skipped where there is no GPU)."""
    _install(session, "test")
    session.run("pytest", "-q", *session.posargs)


def _sweep(session, series):
    _install(session)
    session.run("zo2bench", "sweep", f"experiments/{series}.toml", *session.posargs)


@nox.session
def memory_scaling(session):
    """Series 1: memory against model size (cpu profile on a machine without a GPU)."""
    _sweep(session, "memory_scaling")


@nox.session
def throughput_scaling(session):
    """Series 2: throughput against batch and sequence length."""
    _sweep(session, "throughput_scaling")
