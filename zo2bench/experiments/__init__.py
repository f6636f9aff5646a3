"""Experiment series as data and the sweep that runs them: spec.py (files), runner.py (sweep), cell.py (one cell),
launch.py and zygote.py (a process per cell), progress.py (what the sweep shows), guard.py (its lock, clean code).

    from zo2bench.experiments import load, sweep, describe_experiments
    sweep(load("experiments/smoke.toml"), profile="cpu")
"""
from zo2bench.experiments.runner import sweep
from zo2bench.experiments.spec import Cell, Experiment, describe_experiments, load

__all__ = ["Cell", "Experiment", "describe_experiments", "load", "sweep"]
