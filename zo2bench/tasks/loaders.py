"""Real data into Examples: Hugging Face `datasets` files (SST-2 and SQuAD layouts) and local JSON lines, each
through a prompt template.

    load_sst2("sst2/train.jsonl")                 # {"sentence", "label"} rows -> "<sentence> It was" + great/terrible
    load_squad("squad/validation.jsonl")          # {"title", "context", "question", "answers": {"text": [...]}}
    load_squad("dev-v1.1.json")                   # the official SQuAD file (nested "data"/"paragraphs"/"qas")
    load_examples("mine.jsonl", Template("generation", "{prompt}", " {target}"))   # any task, any fields
    load_sst2("sst2_saved/", split="validation")  # a folder written by datasets' save_to_disk (needs `datasets`)

What is read: a folder saved by `datasets` (Dataset or DatasetDict: `split` picks one; the `datasets` library
must be installed), JSON lines (what `Dataset.to_json` writes), a JSON array, the official SQuAD JSON, and TSV
or CSV with a header (GLUE's SST-2 files). Nothing is downloaded. Templates fill {field} from each record;
classification takes its label word by the record's label (an index, or the word itself); QA and generation
take the first gold answer as the training target and keep them all for EM/F1. MeZO's templates are the
defaults: SST-2 "<sentence> It was great/terrible", SQuAD "Title: ..\\nContext: ..\\nQuestion: ..\\nAnswer:".
A record that lacks a field the template needs is a UserError naming the file, the record and the field.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from zo2bench.errors import UserError
from zo2bench.tasks.examples import TASKS, Example


@dataclass(frozen=True)
class Template:
    task: str                              # TASKS
    prompt: str                            # str.format over the record, e.g. "{sentence} It was"
    target: str = " {answer}"              # QA and generation: the trained continuation ({answer}: first gold)
    label_words: tuple[str, ...] = ()      # classification: the label words, index = label
    label_field: str = "label"
    answers_field: str = "answers"         # QA: gold answers (list, {"text": [...]}, or a string)


SST2 = Template("classification", "{sentence} It was", label_words=(" terrible", " great"))
SQUAD = Template("qa", "Title: {title}\nContext: {context}\nQuestion: {question}\nAnswer:")


def _saved_dataset(path: Path, split: str | None) -> list[dict]:
    try:
        import datasets
    except ImportError:
        raise UserError(f"{path}: a folder saved by Hugging Face datasets; reading it needs the `datasets` library "
                        f"(pip install datasets), or export it with Dataset.to_json and pass the .jsonl") from None
    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise UserError(f"{path}: holds the splits {', '.join(ds)}; pass split= one of them")
        ds = ds[split]
    return [dict(r) for r in ds]


def read_records(path: str | Path, split: str | None = None) -> list[dict]:
    """Every record of a data file (or saved dataset folder) as a dict; see the module docstring."""
    p = Path(path)
    if p.is_dir():
        return _saved_dataset(p, split)
    if not p.is_file():
        raise UserError(f"{p}: no such data file")
    suffix = p.suffix.lower()
    if suffix in (".tsv", ".csv"):
        with open(p, newline="") as f:
            return [dict(r) for r in csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")]
    if suffix == ".parquet":
        try:
            import pandas as pd

            return pd.read_parquet(p).to_dict("records")
        except ImportError as e:
            raise UserError(f"{p}: reading parquet needs pyarrow ({e}); or pass a .jsonl export") from None
    text = p.read_text()
    try:  # one JSON document: an array of records, SQuAD's own layout, or a single record
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        return _squad_official(doc, p) if isinstance(doc.get("data"), list) else [doc]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{p}:{n}: not a JSON line ({e.msg})") from None
    return out


def _squad_official(doc: dict, p: Path) -> list[dict]:
    """SQuAD's own layout (data -> paragraphs -> qas) flattened into the `datasets` rows."""
    rows = []
    for article in doc["data"]:
        for para in article.get("paragraphs", []):
            for qa in para.get("qas", []):
                answers = qa.get("answers", [])
                rows.append({"id": qa.get("id"), "title": article.get("title", ""), "context": para["context"],
                             "question": qa["question"],
                             "answers": {"text": [a["text"] for a in answers],
                                         "answer_start": [a.get("answer_start") for a in answers]}})
    return rows


def _answers(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, dict):
        value = value.get("text", [])
    return tuple(a["text"] if isinstance(a, dict) else str(a) for a in value or ())


def _label(raw, label_words) -> int | None:
    """An index (int or digits) within range, or a label word's index; None otherwise."""
    words = [w.strip() for w in label_words]
    if isinstance(raw, str) and raw.strip() in words:
        return words.index(raw.strip())
    try:
        i = int(raw)
    except (TypeError, ValueError):
        return None
    return i if 0 <= i < len(words) and str(raw).strip() == str(i) else None


def to_example(rec: dict, t: Template, where: str) -> Example:
    if t.task not in TASKS:
        raise UserError(f"template task '{t.task}' is not one of {', '.join(TASKS)}")
    fields = dict(rec)
    answers: tuple[str, ...] = ()
    if t.task == "qa" or (t.task == "generation" and t.answers_field in rec):
        if t.answers_field not in rec and "answer" not in rec:
            raise UserError(f"{where}: no field '{t.answers_field}' (the gold answers)")
        answers = _answers(rec.get(t.answers_field, rec.get("answer")))
        if not answers:
            raise UserError(f"{where}: no gold answer (SQuAD v2's unanswerable questions are not supported)")
        fields.setdefault("answer", answers[0])
    try:
        prompt = t.prompt.format(**fields)
        if t.task == "classification":
            label = _label(rec[t.label_field], t.label_words)
            if label is None:
                raw, words = rec[t.label_field], [w.strip() for w in t.label_words]
                raise UserError(f"{where}: label {raw!r} is neither an index nor one of the label words {words}")
            return Example("classification", prompt, t.label_words[label], t.label_words, label)
        target = t.target.format(**fields)
    except KeyError as e:
        raise UserError(f"{where}: no field {e} (the template needs it; the record has {', '.join(rec)})") from None
    if t.task == "generation" and not answers:
        answers = (target.strip(),)
    return Example(t.task, prompt, target, answers=answers)


def load_examples(path: str | Path, template: Template, split: str | None = None,
                  limit: int | None = None) -> list[Example]:
    recs = read_records(path, split)[:limit]
    return [to_example(r, template, f"{path} record {i + 1}") for i, r in enumerate(recs)]


def load_sst2(path: str | Path, split: str | None = None, template: Template = SST2, **kw) -> list[Example]:
    return load_examples(path, template, split, **kw)


def load_squad(path: str | Path, split: str | None = None, template: Template = SQUAD, **kw) -> list[Example]:
    return load_examples(path, template, split, **kw)


def load_jsonl(path: str | Path, template: Template, **kw) -> list[Example]:
    """Local JSON lines with a template per task (e.g. Template("qa", "{context} Q: {question} A:"))."""
    return load_examples(path, template, **kw)
