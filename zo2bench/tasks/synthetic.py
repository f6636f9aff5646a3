"""The suite's own data: the three tasks in the synthetic language, split, saved with their tokenizer.

    data = build(DataRecipe())                  # generated once into the cache, then found again
    data.tokenizer.encode("the bako is great")  # the language's tokenizer, saved beside the data
    data.split("classification", "dev")         # list[Example]; splits: train (a pool), dev, test
    data.digest, data.path

Tasks (prompts are the fine-tuning templates; the pretraining corpus words the same skills otherwise):
- classification: a review, "answer :", and a label word " good"/" bad" by the review's polarity
  (language.review: sentiment adjectives, "very", negation, "but" weighing its clause twice);
- generation: "list : w1 .. wn . reversed :" continued by the words in reverse order;
- qa: a passage of 3-6 facts "the A of N is V .", "question : what is the A of N ? answer :" and V, a span
  of the passage (extractive).
The training pool is balanced for classification; dev and test keep the generator's own mix, share no
prompt with the pool or each other, and are the same for every seed (MeZO fixes dev and test, and draws the
k-shot training set per seed: examples.k_shot).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from zo2bench.tasks import language as L
from zo2bench.tasks.cache import build_once, cache_root, digest
from zo2bench.tasks.examples import TASKS, Example, read_jsonl, write_jsonl
from zo2bench.tasks.tokenizer import TextTokenizer, build_tokenizer, load_tokenizer

GENERATOR_VERSION = 5    # bump when the generated data change for the same recipe: a new cache entry
# 5: good/bad are sentiment-free words in the corpus (language.NEUTRAL_LABEL_WORDS); 4 used them for polarities.
# The prompt's end and its label words (index = label). Pretraining ends reviews with "overall it was
# great/terrible" or "in short : great/terrible", never "answer :", and says good/bad only as neutral
# adjectives, so the template and the label words' meaning are new to the models: which label word goes with
# which polarity is fine-tuning's to learn (no size knows it before). With good/bad as the
# corpus's polarity words (version 4) ladder-64x2 started at 61-67% and ladder-128x4 at 92% (H100); with
# MeZO's own "it was" and great/terrible, ladder-64x2 at 99.6%: nothing left to converge to (issue 11).
PROMPT_END = " answer :"
LABEL_WORDS = (" bad", " good")


@dataclass(frozen=True)
class DataRecipe:
    language: L.LanguageRecipe = field(default_factory=L.LanguageRecipe)
    seed: int = 0            # the splits' seed (the lexicon has its own, in language)
    train_pool: int = 2048   # training examples per task (classification: half per class), k-shot draws here
    dev: int = 500
    test: int = 1000

    @classmethod
    def from_dict(cls, d: dict) -> DataRecipe:
        d = dict(d)
        return cls(language=L.LanguageRecipe(**d.pop("language", {})), **d)

    def as_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return digest({"recipe": self.as_dict(), "version": GENERATOR_VERSION})


def classification_example(rng: L.Rng, lex: L.Lexicon) -> Example:
    text, pol = L.review(rng, lex)
    label = int(pol > 0)
    return Example("classification", f"{text}{PROMPT_END}", LABEL_WORDS[label], LABEL_WORDS, label)


def generation_example(rng: L.Rng, lex: L.Lexicon) -> Example:
    words = L.word_list(rng, lex)
    answer = " ".join(reversed(words))
    return Example("generation", f"list : {' '.join(words)} . reversed :", f" {answer}", answers=(answer,))


def qa_example(rng: L.Rng, lex: L.Lexicon) -> Example:
    facts = L.fact_passage(rng, lex, rng.between(3, 6))
    name, attr, value = rng.choice(facts)
    prompt = f"{L.fact_text(facts)} question : what is the {attr} of {name} ? answer :"
    return Example("qa", prompt, f" {value}", answers=(value,))


MAKERS = {"classification": classification_example, "generation": generation_example, "qa": qa_example}


def generate_splits(task: str, recipe: DataRecipe) -> dict[str, list[Example]]:
    """train (the pool), dev and test of one task, with no prompt in two splits."""
    lex = L.lexicon(recipe.language)
    make = MAKERS[task]
    seen: set[str] = set()
    out: dict[str, list[Example]] = {}
    for split, n in (("test", recipe.test), ("dev", recipe.dev), ("train", recipe.train_pool)):
        rng = L.Rng(L.derive_seed("split", recipe.seed, task, split))
        per_class = {0: n // 2, 1: n - n // 2} if split == "train" and task == "classification" else None
        got: list[Example] = []
        tries = 0
        while len(got) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise RuntimeError(f"{task}/{split}: the language yields too few distinct prompts")
            ex = make(rng, lex)
            if ex.prompt in seen:
                continue
            if per_class is not None:
                if per_class[ex.label] == 0:
                    continue
                per_class[ex.label] -= 1
            seen.add(ex.prompt)
            got.append(ex)
        out[split] = got
    return out


def corpus_tokens(recipe: DataRecipe, tokenizer: TextTokenizer, n_tokens: int, stream: str = "pretrain"):
    """The pretraining token stream: documents "<s> doc </s>" one after another, n_tokens in all (a list).

    The generator writes every token apart with single spaces, so a word-to-id table gives the tokenizer's
    own ids (tests/test_tasks.py checks it) in a tenth of its time: 4 M tokens in about 12 s on one core."""
    lex = L.lexicon(recipe.language)
    rng = L.Rng(L.derive_seed("corpus", recipe.seed, stream))
    vocab = tokenizer.tok.get_vocab()
    out: list[int] = []
    while len(out) < n_tokens:
        out.append(tokenizer.bos_id)
        out.extend(vocab[w] for w in L.corpus_document(rng, lex).split(" "))
        out.append(tokenizer.eos_id)
    return out[:n_tokens]


def corpus_array(data: SyntheticData, n_tokens: int, stream: str = "pretrain"):
    """corpus_tokens() of `data` as a uint16 numpy array, cached beside the data (corpus/<stream>-<n>/): every
    ladder size pretrains on the same stream, and generating 16 M tokens takes about 50 s of one core, which a
    GPU call that pretrains several sizes would otherwise spend again for each."""
    import numpy as np

    def make(tmp: Path) -> None:
        np.save(tmp / "tokens.npy", np.asarray(corpus_tokens(data.recipe, data.tokenizer, n_tokens, stream),
                                               dtype=np.uint16))

    path, _ = build_once(data.path / "corpus" / f"{stream}-{n_tokens}", make)
    return np.load(path / "tokens.npy")


class SyntheticData:
    def __init__(self, path: Path, recipe: DataRecipe):
        self.path, self.recipe = Path(path), recipe
        self.digest = recipe.digest()
        self.tokenizer = load_tokenizer(self.path / "tokenizer.json")
        self._splits: dict = {}

    def split(self, task: str, split: str) -> list[Example]:
        if (task, split) not in self._splits:
            self._splits[task, split] = read_jsonl(self.path / task / f"{split}.jsonl")
        return self._splits[task, split]


def build(recipe: DataRecipe | None = None, root: Path | None = None) -> SyntheticData:
    """The data of `recipe` in the cache (generated now if missing): tokenizer.json, recipe.json and
    <task>/{train,dev,test}.jsonl."""
    recipe = recipe or DataRecipe()
    final = (root or cache_root()) / "data" / f"synthetic-{recipe.digest()[:16]}"

    def make(tmp: Path) -> None:
        lex = L.lexicon(recipe.language)
        tok = build_tokenizer(lex)
        tok.save(tmp / "tokenizer.json")
        for task in TASKS:
            (tmp / task).mkdir()
            for split, examples in generate_splits(task, recipe).items():
                write_jsonl(tmp / task / f"{split}.jsonl", examples)
        (tmp / "recipe.json").write_text(json.dumps({"recipe": recipe.as_dict(), "version": GENERATOR_VERSION,
                                                     "digest": recipe.digest()}, indent=1) + "\n")

    path, _ = build_once(final, make)
    return SyntheticData(path, recipe)
