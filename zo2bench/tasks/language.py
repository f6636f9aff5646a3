"""A small synthetic language, generated from a seed: its lexicon, its sentences and its pretraining corpus.

    lex = lexicon(LanguageRecipe(seed=0))      # ~2,200 pseudo-words in classes, with sentiment polarities
    rng = Rng(7)
    text, polarity = review(rng, lex)            # "the bakuse is not very fesodi and the ...", -2
    facts = fact_passage(rng, lex, n=5)          # [(name, attribute, value), ...]
    corpus_document(rng, lex)                    # one pretraining document (reviews, facts, lists, stories)

Words are pseudo-words made of consonant-vowel syllables ("bakomi"), each in one class: names, nouns,
verbs, adverbs, sentiment adjectives (positive, negative), neutral adjectives, attributes and values.
A handful of English function words ("the", "is", "not", "but", "great", ...) glue them together, so
prompts read like MeZO's ("... It was great").

Sentiment follows a rule with negation: a review has one sentiment clause, "the X is [not] [very] ADJ",
among neutral clauses; its adjective counts +1 or -1 (the label words "great" and "terrible" among them,
for a tenth of the sentiment clauses), "very" doubles it and "not"/"never" flip it; the label is the sign.
Adjectives before nouns and in the neutral clauses carry no sentiment, and only the sentiment clause is
ever negated. The pretraining corpus mixes five kinds of documents: glossaries (20%; "overall : fesodi great
; not vusa great ."), reviews (40%; nine in ten followed by "in short : great/terrible ." or "overall it
was great/terrible ."), fact passages (16%; 60% followed by questions in a template other than the QA task's),
word lists (14%; 60% followed by "backwards :" and the list reversed) and plain stories (10%). A
pretrained model thus knows the words, the polarities, reading a fact back and reversing a list, each in a
wording close to, but not the same as, the fine-tuning prompts' (as OPT has read reviews, but not MeZO's
"It was great/terrible" template). The classification task's label words (synthetic.LABEL_WORDS, "good" and
"bad") are, in the corpus, neutral adjectives without sentiment (NEUTRAL_LABEL_WORDS), and its "answer" is never
in it (CORPUS_ABSENT): a pretrained model cannot know which label word goes with which polarity. Its accuracy
before fine-tuning is whatever its features happen to give the two words (on the CPU 41% for ladder-128x4, 70%
for ladder-64x2), as an OPT's zero-shot SST-2 accuracy is, and fine-tuning has the mapping to learn.

Randomness comes only from `Rng`, which draws through random.Random.random() alone: Python guarantees
that sequence for a seed across versions and platforms, so every machine generates the same data.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
# English glue: function words, the label words and the prompts' words. Lower case: the tokenizer lowercases.
FUNCTION_WORDS = (
    "the", "a", "is", "was", "not", "never", "very", "and", "but", "it", "of", "what", "question", "answer",
    "reversed", "backwards", "list", "in", "short", "good", "bad", "great", "terrible", "overall", "then",
    "with", "to", "also",
)
PUNCTUATION = (".", ",", "?", ":", ";", "!")
NEGATIONS = ("not", "never")
LABEL_ADJECTIVES = {"positive": "great", "negative": "terrible"}   # the corpus's own polarity words
# The classification task's label words are words without sentiment in the corpus: neutral adjectives of
# neutral clauses, independent of a review's polarity, never in a glossary, a summary or after ":" (tests check
# it). With good/bad as the glossaries' and summaries' polarity words (generator version 4), ladder-128x4
# labelled 92% of dev reviews before fine-tuning on the H100 (ladder-64x2 67%): its steps to target were 0.
# Never emitted at all, their logits sank to about -26 nats in pretraining, and fo-adamw spent its 100 steps
# raising them without learning the labels (dev 47-52% on ladder-64x2 and 128x4; CPU, issue 11).
NEUTRAL_LABEL_WORDS = ("good", "bad")
CORPUS_ABSENT = ("answer", "question")   # the prompts' frame ("answer :"): words the corpus never emits
# The corpus's mix (corpus_document). Reviews followed by a summary are the sentiment rule's supervision in
# pretraining; glossaries put each adjective's polarity, and negation, next to their evidence. Without
# glossaries (reviews 40%, summaries 75%) ladder-64x2 and 128x4 still gave every review one label after
# 1,171 steps of 16 x 64 tokens; with a fifth of glossaries ladder-64x2 had the glossary rule, negation
# included, after 549 steps of 32 x 128 tokens at lr 6e-3 (CPU measurements, issue 11).
GLOSSARY_SHARE = 0.2    # of all documents
REVIEW_SHARE = 0.5      # of the documents that are not glossaries
SUMMARY_SHARE = 0.9     # of the reviews
CLASSES = ("names", "nouns", "verbs", "adverbs", "positive", "negative", "neutral", "attributes", "values")


@dataclass(frozen=True)
class LanguageRecipe:
    """What the language is made of; its fields (and the generator's code version) name the data's digest."""

    seed: int = 0            # the lexicon's seed
    names: int = 300         # people and places: the subjects of facts
    nouns: int = 800
    verbs: int = 200
    adverbs: int = 80
    positive: int = 24       # sentiment adjectives, +1 each (few: their polarity must be learnable from text)
    negative: int = 24       # sentiment adjectives, -1 each
    neutral: int = 240       # adjectives without sentiment
    attributes: int = 30     # the keys of facts ("the <attribute> of <name> is <value>")
    values: int = 500        # the values of facts

    def sizes(self) -> dict[str, int]:
        return {c: getattr(self, c) for c in CLASSES}


class Rng:
    """Deterministic choices from random.Random(seed).random() only (stable across Python versions)."""

    def __init__(self, seed: int):
        self._r = random.Random(seed)

    def random(self) -> float:
        return self._r.random()

    def below(self, n: int) -> int:
        return min(int(self._r.random() * n), n - 1)

    def between(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        return lo + self.below(hi - lo + 1)

    def choice(self, seq):
        return seq[self.below(len(seq))]

    def chance(self, p: float) -> bool:
        return self._r.random() < p

    def shuffle(self, items: list) -> list:
        """Fisher-Yates in place through below(); returns items."""
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]
        return items

    def sample(self, seq, k: int) -> list:
        return self.shuffle(list(seq))[:k]


def derive_seed(*parts) -> int:
    """A seed from several parts (ints and strings), the same on every machine (no hash randomisation)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Lexicon:
    words: dict[str, tuple[str, ...]]   # class -> words
    polarity: dict[str, int]            # sentiment adjective -> +1 / -1

    def all_words(self) -> list[str]:
        return [w for c in CLASSES for w in self.words[c]]


@lru_cache(maxsize=8)
def lexicon(recipe: LanguageRecipe) -> Lexicon:
    rng = Rng(derive_seed("lexicon", recipe.seed))
    syllables = [c + v for c in CONSONANTS for v in VOWELS]
    taken = set(FUNCTION_WORDS)
    need = sum(recipe.sizes().values())
    if need > 0.5 * len(syllables) ** 3:
        raise ValueError(f"{need} words is more than the syllable space holds comfortably")
    drawn: list[str] = []
    while len(drawn) < need:
        w = "".join(rng.choice(syllables) for _ in range(2 if rng.chance(0.5) else 3))
        if w not in taken:
            taken.add(w)
            drawn.append(w)
    words, i = {}, 0
    for cls, n in recipe.sizes().items():
        words[cls] = tuple(drawn[i:i + n])
        i += n
    polarity = {w: 1 for w in words["positive"]} | {w: -1 for w in words["negative"]} | {"great": 1, "terrible": -1}
    return Lexicon(words, polarity)


# -- sentences ------------------------------------------------------------------------------------------
def _noun_phrase(rng: Rng, lex: Lexicon) -> list[str]:
    """"the [neutral adjective] noun": sentiment is carried by predicates only."""
    out = ["the"]
    if rng.chance(0.5):
        out.append(rng.choice(lex.words["neutral"]))
    out.append(rng.choice(lex.words["nouns"]))
    return out


def clause(rng: Rng, lex: Lexicon, sentiment: bool | None = None) -> tuple[list[str], int]:
    """One clause and its sentiment. With sentiment=True: "the X is|was [not|never] [very] ADJ" with a
    sentiment adjective (+1 or -1, x2 after "very", flipped after a negation); False: a neutral clause
    ("the X VERB the Y [ADVERB]" or a neutral predicate "the X is [very] ADJ", never negated), 0; None:
    either (stories)."""
    subject = _noun_phrase(rng, lex)
    if sentiment is None:
        sentiment = rng.chance(0.5)
    if not sentiment and rng.chance(0.6):
        words = [rng.choice(lex.words["verbs"]), *_noun_phrase(rng, lex)]
        if rng.chance(0.4):
            words.append(rng.choice(lex.words["adverbs"]))
        return subject + words, 0
    words, sign, weight = ["is" if rng.chance(0.7) else "was"], 1, 1
    # negation only in sentiment clauses: a "not" in a neutral clause beside the sentiment one made the rule a
    # binding problem (which clause does "not" belong to?) that no ladder model pretrained within budget learned
    if sentiment and rng.chance(0.35):
        words.append(rng.choice(NEGATIONS))
        sign = -1
    if rng.chance(0.3):
        words.append("very")
        weight = 2
    cls = rng.choice(("positive", "negative")) if sentiment else "neutral"
    adj = rng.choice(lex.words[cls])
    if sentiment and rng.chance(0.1):  # the corpus's polarity words are words of the language too
        adj = LABEL_ADJECTIVES[cls]
    elif not sentiment and rng.chance(0.1):
        adj = rng.choice(NEUTRAL_LABEL_WORDS)
    return subject + words + [adj], sign * weight * lex.polarity.get(adj, 0)


def review(rng: Rng, lex: Lexicon) -> tuple[str, int]:
    """A review: one sentiment clause, with a neutral clause before and/or after it half the time each,
    joined by "and"/"but", and its polarity (nonzero: the sentiment clause's)."""
    clauses = [clause(rng, lex, sentiment=False)] if rng.chance(0.5) else []
    clauses.append(clause(rng, lex, sentiment=True))
    if rng.chance(0.5):
        clauses.append(clause(rng, lex, sentiment=False))
    words = list(clauses[0][0])
    for c, _ in clauses[1:]:
        words += [rng.choice(("and", "but")), *c]
    return " ".join(words) + " .", sum(p for _, p in clauses)


def value_phrase(rng: Rng, lex: Lexicon) -> str:
    """A fact's value: one word, or two (a neutral adjective and a value) a third of the time."""
    v = rng.choice(lex.words["values"])
    return f"{rng.choice(lex.words['neutral'])} {v}" if rng.chance(1 / 3) else v


def fact_passage(rng: Rng, lex: Lexicon, n: int) -> list[tuple[str, str, str]]:
    """n facts (name, attribute, value) with distinct (name, attribute) pairs; names and attributes repeat
    across facts, so a question must match both."""
    names = rng.sample(lex.words["names"], max(2, (n + 1) // 2))
    attrs = rng.sample(lex.words["attributes"], max(2, (n + 1) // 2))
    pairs = rng.sample([(a, b) for a in names for b in attrs], n)
    return [(name, attr, value_phrase(rng, lex)) for name, attr in pairs]


def fact_text(facts) -> str:
    return " ".join(f"the {attr} of {name} is {value} ." for name, attr, value in facts)


def word_list(rng: Rng, lex: Lexicon, lo: int = 3, hi: int = 6) -> list[str]:
    pool = lex.words["nouns"] + lex.words["names"]
    return [rng.choice(pool) for _ in range(rng.between(lo, hi))]


def story(rng: Rng, lex: Lexicon) -> str:
    out = []
    for _ in range(rng.between(2, 5)):
        c, _ = clause(rng, lex)
        out.append(" ".join(c) + rng.choice((" .", " .", " ;", " !")))
    return " ".join(out)


def _polarity_word(pol: int) -> str:
    return LABEL_ADJECTIVES["positive" if pol > 0 else "negative"]


def glossary(rng: Rng, lex: Lexicon) -> str:
    """"overall : fesodi great ; not vusa great ; kamo terrible ." - sentiment adjectives with their polarity
    word, negated a third of the time: the words' polarities and negation, each next to its evidence."""
    items = []
    for _ in range(rng.between(3, 6)):
        adj = rng.choice(lex.words[rng.choice(("positive", "negative"))])
        neg = rng.chance(1 / 3)
        pol = lex.polarity[adj] * (-1 if neg else 1)
        items.append(f"{rng.choice(NEGATIONS) + ' ' if neg else ''}{adj} {_polarity_word(pol)}")
    return "overall : " + " ; ".join(items) + " ."


def corpus_document(rng: Rng, lex: Lexicon) -> str:
    """One pretraining document (see the module docstring for the mixture)."""
    u = rng.random()
    if u < GLOSSARY_SHARE:
        return glossary(rng, lex)
    u = (u - GLOSSARY_SHARE) / (1 - GLOSSARY_SHARE)   # the rest of the mix as before, in proportion
    if u < REVIEW_SHARE:
        parts = []
        for _ in range(rng.between(1, 3)):
            text, pol = review(rng, lex)
            if rng.chance(SUMMARY_SHARE):
                text += (f" in short : {_polarity_word(pol)} ." if rng.chance(0.5)
                         else f" overall it was {_polarity_word(pol)} .")
            parts.append(text)
        return " ".join(parts)
    if u < REVIEW_SHARE + 0.2:
        facts = fact_passage(rng, lex, rng.between(3, 6))
        text = fact_text(facts)
        if rng.chance(0.6):
            for name, attr, value in rng.sample(facts, rng.between(1, 2)):
                text += f" {attr} of {name} ? {value} ."
        return text
    if u < REVIEW_SHARE + 0.38:
        words = word_list(rng, lex)
        text = "list : " + " ".join(words) + " ."
        if rng.chance(0.6):
            text += " backwards : " + " ".join(reversed(words)) + " ."
        return text
    return story(rng, lex)
