"""Experiment files: a series declared as data (TOML), checked whole before anything runs, expanded into cells.

    exp = load("experiments/memory_scaling.toml")   # UserError naming the file, the key and what was expected
    profile = exp.choose_profile(None, cuda_available=False)  # --profile, else "gpu" or gpuN (CUDA), else "cpu"
    for cell in exp.cells(profile):                 # per group, smallest model first, repeats innermost
        cell.key, cell.config, cell.n_params
    describe_experiments("experiments")             # what `zo2bench list experiments` shows

A file (every section optional except what the merged profile needs: all five grid axes and steps.measured):

    description = "what the series measures"
    cell_timeout_s = 3600          # a cell still running after this is killed and recorded as `error`

    [base]                         # RunConfig fields shared by every cell (not the grid axes, not the steps)
    device = "cuda"

    [steps]
    warmup = 2                     # run first, reported apart
    measured = 10
    repeats = 1                    # each repeat is its own cell, in its own process

    [grid]                         # the cells are the product of these lists (asv's params)
    models = ["opt-125m", "opt-1.3b"]
    modes = ["zo2", "mezo"]
    dtypes = ["fp16"]
    batches = [1]
    seqs = [2048]

    # parallel = ["single", "pert2+shard2", "dp2"]   # optional: GPUs and strategy of each cell (below)

    [profiles.gpu]                 # empty: the top level as declared
    [profiles.cpu]                 # a variant of the top level: overrides key by key (torchtitan)
    base.device = "cpu"
    grid.models = ["opt-tiny"]

`grid.parallel` (optional) runs each cell as one distributed launch: "single" (one process), or a strategy
as the records name it (distributed/parallel.py): "pert2", "dp2", "dp2xpert2" with "+shardW" where a
weight group of W ranks splits the blocks (no "+shard": --weight-shard 1). The GPUs are dp x pert; the
value joins the cell's key as ":parallel=<value>" (parallel_fields() turns it into RunConfig fields).

`kind = "convergence"` makes a convergence series instead (fine-tuning runs to a target, with a
[convergence] section): zo2bench/convergence/plan.py checks that section and expands its cells, and the
cell runs zo2bench.convergence.cell instead of a measured run. The default kind, "run", is the above.
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from zo2bench import catalog
from zo2bench.config import DTYPES, MODES, RunConfig, check
from zo2bench.errors import UserError

# Grid axis in the file -> RunConfig field it sets.
GRID_AXES = {"models": "model", "modes": "mode", "dtypes": "dtype", "batches": "batch", "seqs": "seq"}
OPTIONAL_AXES = ("parallel",)  # grid axes a file may leave out (one value then: a one-process run)
STEP_KEYS = {"warmup": 0, "measured": None, "repeats": 1}  # default (None: required)
_STRATEGY = re.compile(r"^(?:single|dp(\d+)(?:xpert(\d+))?|pert()(\d+))(?:\+shard(\d+))?$")
DEFAULT_CELL_TIMEOUT_S = 3600.0
# RunConfig fields a [base] may set: the rest are grid axes or steps, each with its own section.
BASE_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)
               if f.name not in set(GRID_AXES.values()) | {"steps", "warmup"}}
LAYER_KEYS = ("description", "cell_timeout_s", "base", "steps", "grid", "convergence")
KINDS = ("run", "convergence")  # a measured run per cell, or a fine-tuning run to a target (convergence/plan.py)
_SERIES_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # it names a results directory
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Cell:
    """One point of the grid, one repeat: what one subprocess runs and one row records."""

    series: str
    profile: str
    config: RunConfig
    repeat: int
    repeats: int
    n_params: int
    timeout_s: float
    extra: tuple = ()            # convergence cells: more axes, ((name, value), ...), in the key and the row
    settings: dict | None = field(default=None, compare=False)  # convergence cells: what the cell needs

    @property
    def key(self) -> str:
        """Stable across runs and machines: resumption and export match rows by it."""
        c = self.config
        return (f"{self.series}:{self.profile}:{c.model}:{c.mode}:{c.dtype}:b{c.batch}:s{c.seq}:r{self.repeat}"
                + "".join(f":{k}={v}" for k, v in self.extra))

    @property
    def name(self) -> str:
        c = self.config
        return (f"{c.model} {c.mode} {c.dtype} b{c.batch} s{c.seq}" + "".join(f" {k}={v}" for k, v in self.extra)
                + (f" r{self.repeat}" if self.repeats > 1 else ""))

    @property
    def group(self) -> tuple:
        """Cells differing only in the model: after an out-of-memory, larger models of a group are not tried."""
        c = self.config
        return (self.profile, c.mode, c.dtype, c.batch, c.seq, dict(self.extra).get("parallel"))

    def axes(self) -> dict:
        c = self.config
        return {"model": c.model, "mode": c.mode, "dtype": c.dtype, "batch": c.batch, "seq": c.seq,
                "repeat": self.repeat, **dict(self.extra)}


@dataclass(frozen=True)
class Experiment:
    name: str
    file: str
    description: str
    profiles: dict  # profile name -> merged layer {"description", "cell_timeout_s", "base", "steps", "grid"}
    kind: str = "run"  # KINDS

    def choose_profile(self, requested: str | None, cuda_available: bool, gpus: int = 1) -> str:
        """--profile as given; else the only profile; else "cpu" without CUDA and "gpu" with it, or, where a
        series has no "gpu" but profiles per GPU count ("gpu2", "gpu4": gpu_scaling), the largest that
        needs no more than this machine's `gpus`."""
        if requested is not None:
            if requested not in self.profiles:
                raise UserError(f"{self.file}: unknown profile '{requested}'; expected one of: "
                                f"{', '.join(self.profiles)}")
            return requested
        if len(self.profiles) == 1:
            return next(iter(self.profiles))
        wanted = "gpu" if cuda_available else "cpu"
        counts = sorted(int(p[3:]) for p in self.profiles if re.fullmatch(r"gpu[1-9][0-9]*", p))
        if wanted == "gpu" and wanted not in self.profiles and counts:
            fits = [n for n in counts if n <= gpus]
            if not fits:
                raise UserError(f"{self.file}: no profile for {gpus} GPU(s) (the smallest, gpu{counts[0]}, needs "
                                f"{counts[0]}); give --profile, one of: {', '.join(self.profiles)}")
            return f"gpu{fits[-1]}"
        if wanted not in self.profiles:
            raise UserError(f"{self.file}: no [profiles.{wanted}] for this machine ({'a' if cuda_available else 'no'} "
                            f"GPU); give --profile, one of: {', '.join(self.profiles)}")
        return wanted

    def cells(self, profile: str, only_models: list[str] | None = None) -> list[Cell]:
        if profile not in self.profiles:
            self.choose_profile(profile, False)  # raises, naming the profiles there are
        layer = self.profiles[profile]
        grid, steps = layer["grid"], layer["steps"]
        models = grid["models"]
        if only_models:
            unknown = [m for m in only_models if m not in models]
            if unknown:
                raise UserError(f"--only-models: {', '.join(unknown)} not in the grid of profile '{profile}' "
                                f"of {self.file}; expected some of: {', '.join(models)}")
            models = [m for m in models if m in only_models]
        if self.kind == "convergence":
            from zo2bench.convergence import plan

            return plan.cells(self, profile, models, make_cell=Cell)
        sizes = {m: _model_spec(m, self.file, "grid.models").n_params() for m in models}  # checked by load()
        models = sorted(models, key=lambda m: sizes[m])  # smaller first, so an OOM can spare the larger ones
        base = RunConfig(**layer["base"]).replace(steps=steps["measured"], warmup=steps["warmup"])
        out = []
        for par in grid.get("parallel", [None]):
            for mode in grid["modes"]:
                for dtype in grid["dtypes"]:
                    for batch in grid["batches"]:
                        for seq in grid["seqs"]:
                            for model in models:
                                cfg = base.replace(model=model, mode=mode, dtype=dtype, batch=batch, seq=seq,
                                                   **(parallel_fields(par) if par else {}))
                                try:  # the run's own rules (eps > 0, a budget for zo2 only, ...), before any runs
                                    check(cfg)
                                    if cfg.nproc_per_node > 1:  # the degrees against the batch and the mode
                                        from zo2bench.distributed.parallel import ParallelDims

                                        ParallelDims.resolve(cfg, cfg.nproc_per_node, cfg.nproc_per_node)
                                except UserError as e:
                                    raise UserError(f"{self.file}: profile '{profile}': "
                                                    + (f"parallel {par}: " if par else "") + str(e)) from None
                                extra = (("parallel", par),) if par else ()
                                out += [Cell(self.name, profile, cfg, r, steps["repeats"], sizes[model],
                                             float(layer["cell_timeout_s"]), extra=extra)
                                        for r in range(steps["repeats"])]
        return out


def parallel_fields(value: str) -> dict:
    """A grid.parallel value as RunConfig fields: "dp2xpert2+shard4" -> nproc_per_node 4, dp 2, pert 2,
    weight_shard 4; "pert2" -> weight_shard 1 (no sharding, as the name says); "single" -> one process."""
    m = _STRATEGY.match(value) if isinstance(value, str) else None
    if not m:
        raise UserError(f"grid.parallel: {value!r} is not a strategy; expected 'single', or dpN, pertN or "
                        "dpNxpertN, each optionally with +shardW")
    dp, pert, _, pert_alone, shard = m.groups()
    dp, pert, shard = int(dp or 1), int(pert or pert_alone or 1), int(shard or 1)
    if value == "single":
        return {}
    if dp * pert < 2:
        raise UserError(f"grid.parallel: {value!r} is one rank; write 'single'")
    return {"nproc_per_node": dp * pert, "dp": dp, "pert": pert, "weight_shard": shard}


# -- reading and checking ------------------------------------------------------------------------

def load(path: str | Path) -> Experiment:
    """Read and check the whole file, every profile expanded once, so that no mistake surfaces mid-sweep."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise UserError(f"{file}: no such experiment file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{file}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{file}: cannot read: {e}") from None

    _check_keys(raw, ("name", "kind", "profiles") + LAYER_KEYS, file, "")
    name = raw.get("name", path.stem)
    _expect(isinstance(name, str) and _SERIES_NAME.match(name), file, "name", name,
            "a series name of letters, digits, '_', '.' or '-' (it names a results directory)")
    kind = raw.get("kind", "run")
    _expect(kind in KINDS, file, "kind", kind, f"one of {', '.join(KINDS)}")
    description = raw.get("description", "")
    top = _check_layer(raw, file, "", kind)
    profiles_raw = raw.get("profiles", {})
    _expect(isinstance(profiles_raw, dict), file, "profiles", profiles_raw, "a table of profiles ([profiles.NAME])")
    if not profiles_raw:
        profiles_raw = {"default": {}}
    profiles = {}
    for pname, layer in profiles_raw.items():
        _expect(isinstance(layer, dict), file, f"profiles.{pname}", layer, f"a table ([profiles.{pname}])")
        _check_keys(layer, LAYER_KEYS, file, f"profiles.{pname}.")
        merged = _merge(top, _check_layer(layer, file, f"profiles.{pname}.", kind))
        merged.setdefault("description", description)
        merged.setdefault("cell_timeout_s", DEFAULT_CELL_TIMEOUT_S)
        for k, default in STEP_KEYS.items():
            if default is None and k not in merged["steps"]:
                raise UserError(f"{file}: steps.measured: missing (profile '{pname}'); expected the number of "
                                f"measured steps (an integer >= 1) in [steps] or [profiles.{pname}.steps]")
            merged["steps"].setdefault(k, default)
        missing = [k for k in GRID_AXES if k not in merged["grid"]]
        if missing:
            raise UserError(f"{file}: grid.{missing[0]}: missing (profile '{pname}'); expected every grid axis "
                            f"({', '.join(GRID_AXES)}) in [grid] or [profiles.{pname}.grid]")
        if kind == "convergence":
            from zo2bench.convergence import plan

            merged["convergence"] = plan.check(merged, file, pname)
        profiles[pname] = merged
    exp = Experiment(name, file, description, profiles, kind)
    for pname, merged in profiles.items():
        where = f"profiles.{pname}." if "seqs" in profiles_raw[pname].get("grid", {}) else ""
        for m in merged["grid"]["models"]:
            spec = _model_spec(m, file, "grid.models", kind)
            too_long = [s for s in merged["grid"]["seqs"] if s > spec.positions]
            if too_long:
                raise UserError(f"{file}: {where}grid.seqs: {too_long[0]} tokens is more than {m} takes "
                                f"(profile '{pname}'); expected sequence lengths <= {spec.positions}")
        exp.cells(pname)
    return exp


def _merge(top: dict, layer: dict) -> dict:
    out = {k: v for k, v in top.items() if not isinstance(v, dict)}
    out.update({k: v for k, v in layer.items() if not isinstance(v, dict)})
    for section in ("base", "steps", "grid"):
        out[section] = {**top.get(section, {}), **layer.get(section, {})}
    if "convergence" in top or "convergence" in layer:
        out["convergence"] = _deep_merge(top.get("convergence", {}), layer.get("convergence", {}))
    return out


def _deep_merge(a: dict, b: dict) -> dict:
    """b over a, table by table ([convergence.modes.zo2] in a profile changes only the keys it names)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


def _check_keys(table: dict, allowed, file: str, prefix: str) -> None:
    for k in table:
        if k not in allowed:
            raise UserError(f"{file}: {prefix}{k}: unknown key; expected one of: {', '.join(allowed)}")


def _expect(ok, file: str, key: str, value, expected: str) -> None:
    if not ok:
        raise UserError(f"{file}: {key}: got {value!r} ({type(value).__name__}); expected {expected}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_layer(layer: dict, file: str, prefix: str, kind: str = "run") -> dict:
    """Type-check one level (the top or a profile); completeness is checked once merged."""
    out = {}
    if "convergence" in layer:
        _expect(kind == "convergence" and isinstance(layer["convergence"], dict), file, f"{prefix}convergence",
                layer["convergence"], 'a table ([convergence]) in a file of kind = "convergence"')
        out["convergence"] = layer["convergence"]
    if "description" in layer:
        _expect(isinstance(layer["description"], str), file, f"{prefix}description", layer["description"], "a string")
        out["description"] = layer["description"]
    if "cell_timeout_s" in layer:
        v = layer["cell_timeout_s"]
        _expect((_is_int(v) or isinstance(v, float)) and v > 0, file, f"{prefix}cell_timeout_s", v,
                "a positive number of seconds")
        out["cell_timeout_s"] = v
    for section in ("base", "steps", "grid"):
        v = layer.get(section, {})
        _expect(isinstance(v, dict), file, f"{prefix}{section}", v, f"a table ([{prefix}{section}])")
    base, steps, grid = layer.get("base", {}), layer.get("steps", {}), layer.get("grid", {})

    _check_keys(base, BASE_FIELDS, file, f"{prefix}base.")
    for k, v in base.items():
        key, default = f"{prefix}base.{k}", BASE_FIELDS[k].default
        if k == "device":
            _expect(isinstance(v, str) and _DEVICE.match(v), file, key, v, "auto, cpu, cuda or cuda:N")
        elif isinstance(default, bool):
            _expect(isinstance(v, bool), file, key, v, "true or false")
        elif _is_int(default):
            _expect(_is_int(v), file, key, v, "an integer")
        elif isinstance(default, float) or default is None:  # gpu_budget_gib: a number (TOML has no null)
            _expect((_is_int(v) or isinstance(v, float)) and v >= 0, file, key, v, "a non-negative number")
        else:
            _expect(isinstance(v, str), file, key, v, "a string")

    _check_keys(steps, STEP_KEYS, file, f"{prefix}steps.")
    for k, v in steps.items():
        least = 0 if k == "warmup" else 1
        _expect(_is_int(v) and v >= least, file, f"{prefix}steps.{k}", v, f"an integer >= {least}")

    _check_keys(grid, (*GRID_AXES, *OPTIONAL_AXES), file, f"{prefix}grid.")
    for k, v in grid.items():
        key = f"{prefix}grid.{k}"
        if k in ("batches", "seqs"):
            what, ok = "integers >= 1", lambda x: _is_int(x) and x >= 1
        elif k == "modes":
            what, ok = f"modes among {', '.join(MODES)}", lambda x: x in MODES
        elif k == "dtypes":
            what, ok = f"dtypes among {', '.join(DTYPES)}", lambda x: x in DTYPES
        elif k == "parallel":
            what, ok = "strategies: 'single', or dpN, pertN, dpNxpertN, each with an optional +shardW", _is_strategy
        else:
            what, ok = "model names (catalog names, local directories or cached Hugging Face ids)", \
                lambda x: isinstance(x, str) and x
        _expect(isinstance(v, list) and v, file, key, v, f"a non-empty list of {what}")
        for i, x in enumerate(v):
            _expect(ok(x), file, f"{key}[{i}]", x, what)
            if k == "models":
                _model_spec(x, file, f"{key}[{i}]", kind)  # unknown names are refused here, where they are written
        _expect(len(set(v)) == len(v), file, key, v, "a list without repeated values")
    return {"base": dict(base), "steps": dict(steps), "grid": dict(grid), **out}


def _is_strategy(value) -> bool:
    try:
        parallel_fields(value)
    except UserError:
        return False
    return True


_SPECS: dict = {}


def _model_spec(name: str, file: str, key: str, kind: str = "run"):
    # convergence: the ladder's shapes, pretrained by the series itself; a directory goes with real data
    if kind == "convergence" and not os.path.isdir(name):
        from zo2bench.convergence import ladder

        try:
            return ladder.get(name)
        except UserError as e:
            raise UserError(f"{file}: {key}: {e}") from None
    if name not in _SPECS:
        try:
            _SPECS[name] = catalog.resolve(name)
        except UserError as e:
            raise UserError(f"{file}: {key}: {e}") from None
    return _SPECS[name]


def describe_experiments(directory: str | Path = "experiments") -> list[dict]:
    """One entry per experiment file: name, file, description, profiles and cells per profile.

    A file that does not pass the checks is listed with its "error" instead of stopping the listing.
    """
    out = []
    for path in sorted(Path(directory).glob("*.toml")):
        try:
            exp = load(path)
        except UserError as e:
            out.append({"name": path.stem, "file": str(path), "description": "", "profiles": [], "cells": {},
                        "error": str(e)})
            continue
        out.append({"name": exp.name, "file": exp.file, "description": exp.description,
                    "profiles": list(exp.profiles), "cells": {p: len(exp.cells(p)) for p in exp.profiles}})
    return out
