"""Real data for the convergence series: a task's splits from files named in the experiment file, with a template.

    [convergence.files.classification]       # this task's data from files instead of the synthetic language
    format = "sst2"                           # start from MeZO's template for the layout: sst2 | squad | none
    train = "data/sst2/train.jsonl"           # JSON lines, a JSON array, SQuAD's JSON, TSV/CSV, parquet, or a
    dev = "data/sst2/validation.jsonl"        #   folder written by datasets' save_to_disk (tasks/loaders.py);
    test = "data/sst2/test.jsonl"             #   paths relative to the experiment file's folder
    prompt = "{sentence} It was"              # optional: the template's fields override the format's
    label_words = [" terrible", " great"]     # classification; target / answers_field for generation and QA
    split = "validation"                      # optional: the split of a saved DatasetDict folder

A task with files runs on real models: every grid.models entry is then a local model directory (config.json,
weights and its tokenizer.json; nothing is downloaded), fine-tuned as it is (no pretraining). The k-shot
training set is drawn from `train` per seed as for the synthetic data; dev and test are their files' first
dev_examples / test_examples records. Each row records the files' sha256.

    check(raw, experiment_file, task)  # the table, checked and completed (absolute paths), or UserError
    splits(spec, task)                 # {"train": [...], "dev": [...], "test": [...]} Examples
    template(spec, task)               # the loaders.Template the spec makes
"""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from zo2bench.errors import UserError
from zo2bench.tasks import loaders

FORMATS = {"sst2": loaders.SST2, "squad": loaders.SQUAD, "none": None}
SPLITS = ("train", "dev", "test")
TEMPLATE_KEYS = ("prompt", "target", "label_words", "label_field", "answers_field")
KEYS = ("format", *SPLITS, "split", *TEMPLATE_KEYS)


def check(raw, experiment_file: str, task: str) -> dict:
    """One [convergence.files.TASK] table: known keys, the three files present, a template for `task`."""
    where = f"{experiment_file}: convergence.files.{task}"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: got {raw!r}; expected a table with train, dev and test files")
    for k in raw:
        if k not in KEYS:
            raise UserError(f"{where}.{k}: unknown key; expected one of {', '.join(KEYS)}")
    fmt = raw.get("format", "none")
    if fmt not in FORMATS:
        raise UserError(f"{where}.format: got {fmt!r}; expected one of {', '.join(FORMATS)}")
    base = Path(experiment_file).resolve().parent
    spec = {"format": fmt, "split": raw.get("split")}
    for split in SPLITS:
        if not isinstance(raw.get(split), str):
            raise UserError(f"{where}.{split}: expected the path of the {split} file (relative to {base})")
        p = (base / raw[split]).resolve()
        if not p.exists():
            raise UserError(f"{where}.{split}: no such file or folder: {p}")
        spec[split] = str(p)
    for k in TEMPLATE_KEYS:
        if k in raw:
            ok = (isinstance(raw[k], list) and len(raw[k]) >= 2 and all(isinstance(w, str) for w in raw[k])
                  if k == "label_words" else isinstance(raw[k], str))
            if not ok:
                raise UserError(f"{where}.{k}: got {raw[k]!r}; expected "
                                + ("a list of two or more label words" if k == "label_words" else "a string"))
            spec[k] = raw[k]
    t = template(spec, task)
    if task == "classification" and not t.label_words:
        raise UserError(f"{where}: a classification task needs label_words (or format = \"sst2\")")
    if "{" not in t.prompt:
        raise UserError(f"{where}.prompt: {t.prompt!r} names no field of the records (e.g. \"{{sentence}} It was\")")
    return spec


def template(spec: dict, task: str) -> loaders.Template:
    base = FORMATS[spec.get("format", "none")]
    if base is None or base.task != task:
        if base is not None:
            raise UserError(f"format {spec['format']!r} is a {base.task} layout, not {task}")
        base = loaders.Template(task, spec.get("prompt", ""))
    given = {k: tuple(v) if k == "label_words" else v for k, v in spec.items() if k in TEMPLATE_KEYS}
    names = {f.name for f in fields(loaders.Template)}
    return replace(base, **{k: v for k, v in given.items() if k in names})


def splits(spec: dict, task: str) -> dict:
    t = template(spec, task)
    return {s: loaders.load_examples(spec[s], t, spec.get("split")) for s in SPLITS}


def digests(spec: dict) -> dict:
    """sha256 of each split's file (a folder: of its files, in name order)."""
    import hashlib

    from zo2bench.tasks.cache import file_sha256

    out = {}
    for s in SPLITS:
        p = Path(spec[s])
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(f"{f.relative_to(p)}:{file_sha256(f)}\n".encode())
            out[s] = h.hexdigest()
        else:
            out[s] = file_sha256(p)
    return out
