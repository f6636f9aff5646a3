"""Task metrics, all in [0, 1]: accuracy, SQuAD's exact match and F1, per-token accuracy.

    accuracy([1, 0, 1], [1, 1, 1])                 # 2/3
    exact_match("The Blue stone.", ["blue stone"])  # 1.0: SQuAD normalisation (case, punctuation, articles)
    f1("blue stone", ["a blue rock"])               # 0.5: token overlap, the best over the gold answers
    mean([...])

SQuAD's official normalisation: lower case, punctuation removed, the articles a/an/the removed, whitespace
collapsed. F1 counts common tokens (with multiplicity) between the prediction and each gold answer.
"""
from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, answers) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(a) for a in answers))


def _f1(prediction: str, answer: str) -> float:
    p, g = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, answers) -> float:
    return max((_f1(prediction, a) for a in answers), default=0.0)


def accuracy(predictions, labels) -> float:
    pairs = list(zip(predictions, labels, strict=True))
    return sum(p == y for p, y in pairs) / len(pairs) if pairs else float("nan")


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
