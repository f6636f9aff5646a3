"""The [convergence] section of an experiment file (kind = "convergence"), checked, and the cells it makes.

    settings = check(merged_layer, file, profile)   # UserError naming the file, the key and what was expected
    cells(experiment, profile, only_models)         # list[experiments.spec.Cell], each with its settings

A convergence experiment uses the sweep's usual sections with these meanings:
    [base]   RunConfig fields of every run: device, seed (seed of repeat 0), weight_decay, prefetch (zo2)
    [steps]  measured = fine-tuning steps (a mode's own `steps` below wins); repeats = seeds: repeat r runs
             with seed base.seed + r, which draws its k-shot training set, its batch order and (zo) its z
    [grid]   models = ladder names (convergence/ladder.py); modes; dtypes; batches (examples per step);
             seqs (the longest example in tokens: prompt + target)
and one more section:
    [convergence]
    tasks = ["classification"]       # of tasks.examples.TASKS
    shots = [16]                     # k per class (generation and QA: 2k examples)
    eval_every = 50                  # steps between dev evaluations (a mode's own `eval_every` wins)
    dev_examples = 256               # the first of the dev split (fixed for every seed)
    test_examples = 1000
    eval_batch = 64
    target_fraction = 0.9            # the target: this fraction of the reference mode's dev metric
    target_reference = "fo-adamw"    #   on the same model, task and k (analysis/convergence.py)
    [convergence.modes.zo2]          # one table per mode of the grid: its learning-rate grid (required),
    lrs = [1e-4, 1e-3]               #   its eps grid (zo2, mezo; default [1e-3]), its steps, eval_every and
                                     #   repeats (seeds 0..repeats-1; e.g. mezo only where zo2's curve needs it)
    lr_width = 128                   #   optional: the lrs hold up to this width and scale by lr_width/width
                                     #   above it (one grid for a ladder whose stable lr falls with width)
    eps = [1e-3]
    [convergence.pretrain]           # convergence.pretrain.PretrainRecipe fields
    [convergence.data]               # tasks.synthetic.DataRecipe fields (language = {...LanguageRecipe})
    [convergence.files.TASK]         # real data for TASK from files, with a template (convergence/files.py);
                                     #   grid.models are then local model directories, not ladder names

Every grid point of (model, task, k, mode, dtype, batch, seq, lr, eps) and seed is one cell; the learning
rate is chosen afterwards on dev (analysis/convergence.py), so every run of the grid is a row. Cells go
model by model (smallest first), the reference mode first within each task, so that a sweep cut short
holds whole models and their targets.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

from zo2bench.config import MODES, ZO_MODES, RunConfig, check_mode
from zo2bench.errors import UserError

DEFAULTS = {"tasks": ["classification"], "shots": [16], "eval_every": 50, "dev_examples": 256,
            "test_examples": 1000, "eval_batch": 64, "target_fraction": 0.9, "target_reference": "fo-adamw"}
MODE_KEYS = ("lrs", "eps", "steps", "eval_every", "repeats", "lr_width")
DEFAULT_EPS = [1e-3]


def _fail(file: str, key: str, value, expected: str):
    raise UserError(f"{file}: convergence.{key}: got {value!r}; expected {expected}")


def _expect(ok, file: str, key: str, value, expected: str) -> None:
    if not ok:
        _fail(file, key, value, expected)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return (_int(v) or isinstance(v, float)) and math.isfinite(v)


def _positive_list(file, key, v, what="positive numbers") -> list:
    if not (isinstance(v, list) and v and all(_num(x) and x > 0 for x in v) and len(set(v)) == len(v)):
        _fail(file, key, v, f"a non-empty list of distinct {what}")
    return [float(x) for x in v]


def _fields(file: str, key: str, given, cls) -> dict:
    """A table of a dataclass's fields (one level of nesting for LanguageRecipe), types as the defaults'."""
    if not isinstance(given, dict):
        _fail(file, key, given, "a table")
    names = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    for k, v in given.items():
        if k not in names:
            _fail(file, f"{key}.{k}", v, f"one of the keys {', '.join(names)}")
        d = getattr(defaults, k)
        if dataclasses.is_dataclass(d):
            _fields(file, f"{key}.{k}", v, type(d))
        elif isinstance(d, str):
            _expect(isinstance(v, str), file, f"{key}.{k}", v, "a string")
        elif _int(d):
            _expect(_int(v) and v >= 0, file, f"{key}.{k}", v, "an integer >= 0")
        elif not (_num(v) and v >= 0):
            _fail(file, f"{key}.{k}", v, "a number >= 0")
    return given


def check(layer: dict, file: str, profile: str) -> dict:
    """The profile's [convergence] settings, complete and checked (defaults filled in)."""
    from zo2bench.convergence import ladder
    from zo2bench.convergence.pretrain import PretrainRecipe
    from zo2bench.tasks.examples import TASKS
    from zo2bench.tasks.synthetic import DataRecipe

    file = f"{file} (profile '{profile}')"
    raw = layer.get("convergence", {})
    allowed = (*DEFAULTS, "modes", "pretrain", "data", "files")
    for k in raw:
        if k not in allowed:
            _fail(file, k, raw[k], f"one of the keys {', '.join(allowed)}")
    s = {**DEFAULTS, **{k: v for k, v in raw.items() if k in DEFAULTS}}
    if not (isinstance(s["tasks"], list) and s["tasks"] and all(t in TASKS for t in s["tasks"])
            and len(set(s["tasks"])) == len(s["tasks"])):
        _fail(file, "tasks", s["tasks"], f"a non-empty list of distinct tasks among {', '.join(TASKS)}")
    if not (isinstance(s["shots"], list) and s["shots"] and all(_int(k) and k >= 1 for k in s["shots"])):
        _fail(file, "shots", s["shots"], "a non-empty list of integers >= 1 (examples per class)")
    for k in ("eval_every", "dev_examples", "test_examples", "eval_batch"):
        _expect(_int(s[k]) and s[k] >= 1, file, k, s[k], "an integer >= 1")
    _expect(_num(s["target_fraction"]) and 0 < s["target_fraction"] <= 1, file, "target_fraction",
            s["target_fraction"], "a number in (0, 1]")
    _expect(s["target_reference"] in MODES, file, "target_reference", s["target_reference"],
            f"a mode among {', '.join(MODES)}")
    s["pretrain"] = _fields(file, "pretrain", raw.get("pretrain", {}), PretrainRecipe)
    s["data"] = _fields(file, "data", raw.get("data", {}), DataRecipe)
    data = DataRecipe.from_dict(s["data"])
    half = data.train_pool // 2
    grid, steps = layer["grid"], layer["steps"]
    s["files"] = _files(raw.get("files", {}), file, s["tasks"])
    if s["files"]:
        _real_models(grid, file)
    else:
        for k, split in (("dev_examples", "dev"), ("test_examples", "test")):
            n = getattr(data, split)
            _expect(s[k] <= n, file, k, s[k], f"at most the {split} split's {n} examples (convergence.data.{split})")
        _expect(max(s["shots"]) <= half, file, "shots", s["shots"],
                f"at most {half} per class (half of convergence.data.train_pool)")
        for m in grid["models"]:
            _expect(m in ladder.LADDER, file, "models", m,
                    f"ladder models for grid.models: {', '.join(ladder.LADDER)}")
        too_long = [q for q in grid["seqs"] if q > ladder.POSITIONS]
        _expect(not too_long, file, "seqs", too_long, f"grid.seqs <= {ladder.POSITIONS} (the ladder's positions)")
    modes_raw = raw.get("modes", {})
    _expect(isinstance(modes_raw, dict), file, "modes", modes_raw, "a table of [convergence.modes.MODE] tables")
    modes = {}
    for mode, t in modes_raw.items():
        try:
            check_mode(mode)
        except UserError as e:
            _fail(file, f"modes.{mode}", t, str(e))
        _expect(isinstance(t, dict), file, f"modes.{mode}", t, "a table")
        for k in t:
            _expect(k in MODE_KEYS, file, f"modes.{mode}.{k}", t[k], f"one of the keys {', '.join(MODE_KEYS)}")
    for mode in grid["modes"]:
        t = modes_raw.get(mode)
        _expect(t is not None, file, f"modes.{mode}", None, f"a [convergence.modes.{mode}] table with its lrs")
        _expect("lrs" in (t or {}), file, f"modes.{mode}.lrs", None, "the learning-rate grid of this mode")
        out = {"lrs": _positive_list(file, f"modes.{mode}.lrs", t["lrs"])}
        if mode in ZO_MODES:
            out["eps"] = _positive_list(file, f"modes.{mode}.eps", t.get("eps", DEFAULT_EPS))
        elif "eps" in t:
            _fail(file, f"modes.{mode}.eps", t["eps"], "no eps: backprop takes none")
        for k, default in (("steps", steps["measured"]), ("eval_every", s["eval_every"]),
                           ("repeats", steps["repeats"])):
            v = t.get(k, default)
            _expect(_int(v) and v >= 1, file, f"modes.{mode}.{k}", v, "an integer >= 1")
            out[k] = v
        if "lr_width" in t:
            _expect(_int(t["lr_width"]) and t["lr_width"] >= 1, file, f"modes.{mode}.lr_width", t["lr_width"],
                    "an integer >= 1 (a model width)")
            out["lr_width"] = t["lr_width"]
        modes[mode] = out
    s["modes"] = modes
    return s


def _files(raw, file: str, tasks: list) -> dict:
    """[convergence.files.TASK] tables, checked; every task of the profile must then have one (real models
    cannot read the synthetic language, nor the ladder real data)."""
    from zo2bench.convergence import files

    _expect(isinstance(raw, dict), file, "files", raw, "a table of [convergence.files.TASK] tables")
    if not raw:
        return {}
    path = file.split(" (profile ")[0]
    out = {}
    for task, t in raw.items():
        _expect(task in tasks, file, f"files.{task}", t, f"a task of convergence.tasks ({', '.join(tasks)})")
        out[task] = files.check(t, path, task)
    missing = [t for t in tasks if t not in out]
    _expect(not missing, file, "tasks", missing, "tasks that all have files, or none (synthetic data)")
    return out


def model_spec(model: str):
    """A ladder size's ModelSpec, or a local model directory's (catalog.resolve reads its config)."""
    from zo2bench import catalog
    from zo2bench.convergence import ladder

    return ladder.get(model) if model in ladder.LADDER else catalog.resolve(model)


def n_params(model: str) -> int:
    return model_spec(model).n_params()


def _real_models(grid: dict, file: str) -> None:
    import os

    for m in grid["models"]:
        ok = os.path.isfile(os.path.join(m, "config.json")) and os.path.isfile(os.path.join(m, "tokenizer.json"))
        _expect(ok, file, "models", m, "with convergence.files: local model directories holding config.json and "
                                       "tokenizer.json (relative to where the sweep runs)")


def lr_grid(model: str, lrs: list, lr_width: int | None) -> list:
    """A mode's lrs for `model`: as given, or scaled by lr_width/width above lr_width (3 significant digits,
    so that the cell keys stay readable)."""
    if not lr_width:
        return list(lrs)
    width = model_spec(model).hidden
    return [float(f"{lr * min(1.0, lr_width / width):.3g}") for lr in lrs]


def synthetic_version(recipe: dict) -> str:
    """The synthetic data's version in a cell's key: "v<generator version>-<recipe digest, 8 hex>". A new
    generator (or recipe) gives new keys, so the sweep runs every cell again on the new data instead of
    taking rows made with the old data as recorded; the analysis keeps the two apart by the rows' digests."""
    from zo2bench.tasks.synthetic import GENERATOR_VERSION, DataRecipe

    return f"v{GENERATOR_VERSION}-{DataRecipe.from_dict(recipe).digest()[:8]}"


def cells(experiment, profile: str, models: list[str], *, make_cell) -> list:
    """The profile's cells for `models` (the grid's, already narrowed by --only-models in spec.py);
    `make_cell` is experiments.spec.Cell, passed in so that this package (below the sweep) never imports
    the experiments package back."""
    layer = experiment.profiles[profile]
    grid, s = layer["grid"], layer["convergence"]
    sizes = {m: n_params(m) for m in models}
    models = sorted(models, key=sizes.__getitem__)
    modes = sorted(grid["modes"], key=lambda m: m != s["target_reference"])
    base = RunConfig(**layer["base"])
    shared = {k: s[k] for k in ("dev_examples", "test_examples", "eval_batch", "target_fraction",
                                "target_reference", "pretrain", "data", "files")}
    out = []
    data = () if s.get("files") else (("data", synthetic_version(s["data"])),)
    for model, task, k, mode in itertools.product(models, s["tasks"], s["shots"], modes):
        m = s["modes"][mode]
        lrs = lr_grid(model, m["lrs"], m.get("lr_width"))
        for dtype, batch, seq, lr, eps in itertools.product(grid["dtypes"], grid["batches"], grid["seqs"],
                                                            lrs, m.get("eps", [None])):
            extra = (("task", task), ("k", k), ("lr", lr)) + ((("eps", eps),) if eps is not None else ()) + data
            settings = {**shared, "task": task, "shots": k, "eval_every": m["eval_every"],
                        "lr_grid": lrs, "eps_grid": m.get("eps")}
            for r in range(m["repeats"]):
                cfg = base.replace(model=model, mode=mode, dtype=dtype, batch=batch, seq=seq, steps=m["steps"],
                                   warmup=0, lr=lr, eps=eps if eps is not None else base.eps, seed=base.seed + r)
                out.append(make_cell(experiment.name, profile, cfg, r, m["repeats"], sizes[model],
                                float(layer["cell_timeout_s"]), extra=extra, settings=settings))
    return out
