"""One example of any task: a prompt, the continuation that is trained on, and what evaluation compares.

    ex = Example("classification", "the bako is fesodi . it was", " great", candidates=(" terrible", " great"),
                 label=1)
    ex = Example("qa", "... question : what is the tepa of lomi ? answer :", " rasu", answers=("rasu",))
    write_jsonl(path, examples); read_jsonl(path)
    k_shot(train, k=16, seed=3)    # classification: k per class; other tasks: 2k examples

All three tasks train through the engine's causal-LM loss on the target's tokens (labels = -100 on the
prompt). Generation and QA targets end with the tokenizer's end-of-sequence token (encode.py adds it), so
that greedy decoding knows where an answer stops. Evaluation (evaluate.py): classification by scoring the
candidates (MeZO's protocol), generation by exact match and per-token accuracy, QA by exact match and F1
of the greedily generated answer.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from zo2bench.tasks.language import Rng, derive_seed

TASKS = ("classification", "generation", "qa")
# The dev metric a target and the hyper-parameter choice are stated in, per task (all in [0, 1]).
PRIMARY_METRIC = {"classification": "accuracy", "generation": "token_accuracy", "qa": "f1"}


@dataclass(frozen=True)
class Example:
    task: str                            # TASKS
    prompt: str
    target: str                          # trained on; for classification candidates[label]
    candidates: tuple[str, ...] = ()     # classification: the label words (index = label)
    label: int | None = None
    answers: tuple[str, ...] = ()        # generation and QA: gold answers (EM/F1 take the best)

    def as_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> Example:
        return cls(d["task"], d["prompt"], d["target"], tuple(d.get("candidates") or ()), d.get("label"),
                   tuple(d.get("answers") or ()))


def write_jsonl(path: str | Path, examples) -> None:
    with open(path, "w") as f:
        for ex in examples:
            f.write(json.dumps(ex.as_dict(), ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[Example]:
    with open(path) as f:
        return [Example.from_dict(json.loads(line)) for line in f if line.strip()]


def k_shot(train: list[Example], k: int, seed: int) -> list[Example]:
    """MeZO's k-shot training set: k examples per class (classification) or 2k examples (generation, QA: the
    size of a binary task's set), drawn from the pool with `seed` and shuffled."""
    from zo2bench.errors import UserError

    rng = Rng(derive_seed("k-shot", seed, k))
    if train and train[0].task == "classification":
        by_class: dict = {}
        for ex in train:
            by_class.setdefault(ex.label, []).append(ex)
        short = {c: len(v) for c, v in by_class.items() if len(v) < k}
        if short:
            raise UserError(f"k = {k} per class, but the training pool has only {short} (class: examples)")
        out = [ex for c in sorted(by_class) for ex in rng.sample(by_class[c], k)]
    else:
        if len(train) < 2 * k:
            raise UserError(f"k = {k} asks for {2 * k} examples, but the training pool has {len(train)}")
        out = rng.sample(train, 2 * k)
    return rng.shuffle(out)
