"""zo2bench.tasks: the synthetic language and its three tasks (deterministic, split, labelled by their rules), the
tokenizer, k-shot sets, loaders for real-data files written here, metrics, and evaluation through a known scorer."""
import json

import pytest
import torch

from zo2bench.errors import UserError
from zo2bench.tasks import language as L
from zo2bench.tasks import loaders, metrics
from zo2bench.tasks import synthetic as S
from zo2bench.tasks.cache import file_sha256
from zo2bench.tasks.encode import IGNORE, Encoder, collate
from zo2bench.tasks.evaluate import evaluate
from zo2bench.tasks.examples import TASKS, Example, k_shot
from zo2bench.tasks.tokenizer import VOCAB_SIZE, build_tokenizer, load_tokenizer

SMALL = S.DataRecipe(train_pool=96, dev=40, test=40)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return S.build(SMALL, tmp_path_factory.mktemp("cache"))


def test_the_same_seed_gives_the_same_data_and_another_seed_other_data(data, tmp_path):
    again = S.build(SMALL, tmp_path)
    assert again.path != data.path and again.path.name == data.path.name  # named by the recipe's digest
    for task in TASKS:
        for split in ("train", "dev", "test"):
            assert file_sha256(again.path / task / f"{split}.jsonl") == file_sha256(data.path / task / f"{split}.jsonl")
    assert file_sha256(again.path / "tokenizer.json") == file_sha256(data.path / "tokenizer.json")
    other = S.generate_splits("classification", S.DataRecipe(seed=1, train_pool=96, dev=40, test=40))
    assert [e.prompt for e in other["dev"]] != [e.prompt for e in data.split("classification", "dev")]
    lex0, lex1 = L.lexicon(L.LanguageRecipe(seed=0)), L.lexicon(L.LanguageRecipe(seed=1))
    assert lex0.words["nouns"] != lex1.words["nouns"]
    words = lex0.all_words()
    assert len(words) == len(set(words)) and not set(words) & set(L.FUNCTION_WORDS)


def _polarity(text: str, lex: L.Lexicon) -> int:
    """The sentiment rule, written again from the words: each predicate adjective after is/was counts, x2
    after "very", flipped after not/never; exactly one clause carries sentiment; other adjectives are neutral."""
    total, carriers = 0, 0
    words = text.replace(" .", "").split()
    for i, w in enumerate(words):
        if w in ("is", "was"):
            sign, mult, j = 1, 1, i + 1
            if words[j] in L.NEGATIONS:
                sign, j = -1, j + 1
            if words[j] == "very":
                mult, j = 2, j + 1
            total += sign * mult * lex.polarity.get(words[j], 0)
            carriers += words[j] in lex.polarity
        elif w in lex.polarity and words[i - 1] not in ("is", "was", "very", *L.NEGATIONS):
            return 0  # an attributive sentiment adjective: the rule says there is none
    return total if carriers == 1 else 0


def test_every_task_follows_its_rule(data):
    lex = L.lexicon(SMALL.language)
    for ex in data.split("classification", "test"):
        review = ex.prompt.removesuffix(S.PROMPT_END)
        assert ex.label == int(_polarity(review, lex) > 0) and ex.target == ex.candidates[ex.label]
    for ex in data.split("generation", "test"):
        words = ex.prompt.split(" . reversed :")[0].removeprefix("list : ").split()
        assert ex.answers == (" ".join(reversed(words)),) and ex.target == " " + ex.answers[0]
    for ex in data.split("qa", "test"):
        passage, question = ex.prompt.split(" question : what is the ")
        attr, name = question.removesuffix(" ? answer :").split(" of ")
        assert f"the {attr} of {name} is {ex.answers[0]} ." in passage  # extractive: a span of the passage
        assert passage.count(f"the {attr} of {name} is ") == 1


def test_negation_is_only_in_the_sentiment_clause_and_glossaries_follow_the_rule():
    """A "not" in a neutral clause beside the sentiment one made the label a binding problem that no ladder model
    learned in its pretraining budget (issue 11): negation now sits only before a sentiment adjective."""
    lex = L.lexicon(L.LanguageRecipe())
    rng = L.Rng(3)
    for _ in range(400):
        words = L.review(rng, lex)[0].split()
        for i, w in enumerate(words):
            if w in L.NEGATIONS:
                nxt = words[i + 2] if words[i + 1] == "very" else words[i + 1]
                assert nxt in lex.polarity, " ".join(words)
    for _ in range(100):
        text = L.glossary(rng, lex)
        assert text.startswith("overall : ") and text.endswith(" .")
        for item in text[len("overall : "):-2].split(" ; "):
            *neg, adj, word = item.split()
            assert word == ("great" if lex.polarity[adj] * (-1 if neg else 1) > 0 else "terrible")
    kinds = [L.corpus_document(rng, lex).split()[:2] for _ in range(2000)]
    share = sum(k == ["overall", ":"] for k in kinds) / len(kinds)
    assert abs(share - L.GLOSSARY_SHARE) < 0.03


def test_the_pretraining_corpus_never_ties_the_label_words_to_a_polarity(data):
    """Pretrained on a corpus whose glossaries and summaries said good/bad for the polarities, ladder-128x4
    labelled 92% of dev reviews before fine-tuning (issue 11): nothing was left to converge to. The label words
    may appear only as neutral adjectives of neutral clauses (never in a glossary, a summary, a sentiment clause
    or after ":"), and "answer" never: which label word goes with which polarity is new to every model."""
    label_words = {w.strip() for w in S.LABEL_WORDS}
    assert label_words == set(L.NEUTRAL_LABEL_WORDS) and "answer" in L.CORPUS_ABSENT
    assert not label_words & set(L.LABEL_ADJECTIVES.values())
    lex = L.lexicon(SMALL.language)
    rng = L.Rng(5)
    docs = [L.corpus_document(rng, lex) for _ in range(3000)]
    words = [w for d in docs for w in d.split()]
    assert not set(words) & set(L.CORPUS_ABSENT)
    assert all(words.count(w) > 20 for w in label_words)   # emitted (their logits stay alive), but neutral:
    for d in docs:
        toks = d.split()
        for i, w in enumerate(toks):
            if w in label_words:
                assert toks[i - 1] in ("is", "was", "very"), d   # a predicate "the X is [very] good" ...
                assert not any(t in L.NEGATIONS for t in toks[max(0, i - 2):i]), d   # never negated ...
                assert not d.startswith("overall :") and toks[i + 1] in (".", ";", "!", "and", "but"), d
    for _ in range(300):   # ... and in reviews independent of the polarity: never the sentiment clause
        text, pol = L.review(rng, lex)
        clauses = [c for c in text.replace(" but ", " and ").removesuffix(" .").split(" and ")]
        assert all(c.split()[-1] not in label_words or c.split()[-1] in label_words and
                   not any(t in lex.polarity for t in c.split()) for c in clauses)
    seen = {data.tokenizer.tok.id_to_token(i) for i in set(S.corpus_tokens(SMALL, data.tokenizer, 100_000))}
    assert label_words <= seen and not seen & set(L.CORPUS_ABSENT)


def test_splits_share_no_prompt_and_the_pool_is_balanced(data):
    for task in TASKS:
        sets = [{e.prompt for e in data.split(task, s)} for s in ("train", "dev", "test")]
        assert sum(map(len, sets)) == len(set().union(*sets)) == 96 + 40 + 40
    labels = [e.label for e in data.split("classification", "train")]
    assert labels.count(0) == labels.count(1) == 48


def test_k_shot_sets(data):
    train = data.split("classification", "train")
    a, b, c = k_shot(train, 16, seed=0), k_shot(train, 16, seed=0), k_shot(train, 16, seed=1)
    assert a == b and a != c and len(a) == 32 and sum(e.label for e in a) == 16
    assert len(k_shot(data.split("qa", "train"), 8, seed=0)) == 16      # generation and QA: 2k examples
    with pytest.raises(UserError, match="per class"):
        k_shot(train, 49, seed=0)


def test_tokenizer_words_are_tokens_and_it_round_trips(data, tmp_path):
    tok = data.tokenizer
    assert tok.vocab_size == VOCAB_SIZE and (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    unk = tok.tok.token_to_id("<unk>")
    for task in TASKS:
        for ex in data.split(task, "dev")[:10]:
            ids = tok.encode(ex.prompt + ex.target)
            assert unk not in ids and len(ids) == len((ex.prompt + ex.target).split())
            assert tok.decode(ids) == (ex.prompt + ex.target).strip()
    tok.save(tmp_path / "t.json")
    assert load_tokenizer(tmp_path / "t.json").encode("the great list") == tok.encode("the great list")
    text = "overall it was great"
    assert build_tokenizer(L.lexicon(SMALL.language)).encode(text) == tok.encode(text)
    stream = S.corpus_tokens(SMALL, tok, 3000)  # its word-to-id shortcut gives the tokenizer's own ids
    docs = tok.decode(stream).split(" ")
    assert len(stream) == 3000 and stream[0] == tok.bos_id and tok.eos_id in stream
    assert all(tok.tok.token_to_id(w) is not None for w in docs)
    with pytest.raises(UserError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_encoder_scores_only_the_target_and_truncates_the_prompt_start(data):
    enc = Encoder(data.tokenizer, seq=64)
    exs = data.split("qa", "dev")[:4]
    ids, labels = collate([enc.pair(e) for e in exs], enc.pad_id)
    for i, e in enumerate(exs):
        t = enc.target_ids(e)
        assert t[-1] == data.tokenizer.eos_id  # QA targets end with end-of-sequence
        scored = labels[i][labels[i] != IGNORE].tolist()
        assert scored == t
    short = Encoder(data.tokenizer, seq=12)
    p, n = short.pair(exs[0])
    assert len(p) <= 12 and p[0] == data.tokenizer.bos_id and short.truncated == 1
    assert p[n:] == short.target_ids(exs[0])


def test_metrics():
    assert metrics.exact_match("The  Blue stone.", ["blue stone"]) == 1.0
    assert metrics.exact_match("blue", ["blue stone"]) == 0.0
    assert metrics.f1("blue stone", ["a blue rock"]) == pytest.approx(0.5)
    assert metrics.f1("rock", ["blue stone", "rock"]) == 1.0
    assert metrics.f1("", ["x"]) == 0.0
    assert metrics.accuracy([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)


class Oracle:
    """A scorer that knows each example's continuation: its logits favour the right next token; wrong=True
    favours the other label word (classification) or end-of-sequence at once (generation, QA)."""

    def __init__(self, enc, examples, wrong=False):
        self.enc, self.wrong = enc, wrong
        self.known = [(enc.pair(e)[0][:enc.pair(e)[1]], enc.pair(e)[0], e) for e in examples]

    def __call__(self, batch):
        tok, T = self.enc.tok, batch.input_ids.shape[1]
        out = torch.full((len(batch.target_ids), tok.vocab_size), -10.0)
        for r, pos in enumerate(batch.target_pos.tolist()):
            b, p = divmod(pos, T - 1)
            ctx = batch.input_ids[b, :p + 1].tolist()
            prompt, full, e = max((k for k in self.known if ctx[:len(k[0])] == k[0]), key=lambda k: len(k[0]))
            if e.task == "classification":
                nxt = tok.encode(e.candidates[1 - e.label] if self.wrong else e.target)[0]
            else:
                nxt = tok.eos_id if self.wrong or p + 1 >= len(full) else full[p + 1]
            out[r, nxt] = 10.0
        return out


@pytest.mark.parametrize("task", TASKS)
def test_evaluation_through_a_known_scorer(data, task):
    enc = Encoder(data.tokenizer, seq=128)
    exs = data.split(task, "dev")[:12]
    right = evaluate(exs, Oracle(enc, exs), enc, "cpu", batch_size=5)
    wrong = evaluate(exs, Oracle(enc, exs, wrong=True), enc, "cpu", batch_size=5)
    if task == "classification":
        assert right["accuracy"] == 1.0 and wrong["accuracy"] == 0.0 and right["loss"] < wrong["loss"]
    else:
        assert right["exact_match"] == right["token_accuracy"] == 1.0
        assert wrong["exact_match"] == 0.0 and wrong["token_accuracy"] < 1.0
    if task == "qa":
        assert right["f1"] == 1.0 and wrong["f1"] == 0.0  # greedy decoding: the oracle's answer, or nothing


def test_loaders_read_the_sst2_and_squad_layouts_and_json_lines(tmp_path):
    sst = tmp_path / "sst2.jsonl"  # what datasets' Dataset.to_json writes for glue/sst2
    sst.write_text('{"sentence":"a fine film","label":1,"idx":0}\n{"sentence":"dull","label":0,"idx":1}\n')
    exs = loaders.load_sst2(sst)
    assert [e.prompt for e in exs] == ["a fine film It was", "dull It was"]
    assert [e.target for e in exs] == [" great", " terrible"] and exs[0].label == 1
    tsv = tmp_path / "dev.tsv"  # GLUE's own file
    tsv.write_text("sentence\tlabel\nit is good\t1\n")
    assert loaders.load_sst2(tsv)[0].label == 1
    squad = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12},
                                                               {"text": "in France", "answer_start": 9}]}]}]}]}
    (tmp_path / "dev-v1.1.json").write_text(json.dumps(squad))
    (tmp_path / "squad.jsonl").write_text(json.dumps({"id": "q1", "title": "T", "context": "Paris is in France.",
                                                      "question": "Where is Paris?",
                                                      "answers": {"text": ["France", "in France"],
                                                                  "answer_start": [12, 9]}}) + "\n")
    a, b = loaders.load_squad(tmp_path / "dev-v1.1.json")[0], loaders.load_squad(tmp_path / "squad.jsonl")[0]
    assert a == b and a.answers == ("France", "in France") and a.target == " France"
    assert a.prompt == "Title: T\nContext: Paris is in France.\nQuestion: Where is Paris?\nAnswer:"
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"text": "1 2 3", "next": "4 5"}\n{"text": "a b", "next": "c"}\n')
    gen = loaders.load_jsonl(mine, loaders.Template("generation", "count: {text}", " {next}"))
    assert gen[0] == Example("generation", "count: 1 2 3", " 4 5", answers=("4 5",))


def test_loaders_say_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "x", "label": 0}\n{"sentence": \n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not a JSON line"):
        loaders.load_sst2(bad)
    nolabel = tmp_path / "nolabel.jsonl"
    nolabel.write_text('{"text": "x"}\n')
    with pytest.raises(UserError, match=r"record 1: no field 'sentence'"):
        loaders.load_sst2(nolabel)
    odd = tmp_path / "odd.jsonl"
    odd.write_text('{"sentence": "x", "label": 7}\n')
    with pytest.raises(UserError, match="neither an index nor one of the label words"):
        loaders.load_sst2(odd)
    with pytest.raises(UserError, match="no such data file"):
        loaders.load_sst2(tmp_path / "missing.jsonl")
    with pytest.raises(UserError, match="no gold answer"):
        loaders.to_example({"context": "c", "question": "q", "title": "", "answers": {"text": []}}, loaders.SQUAD, "x")


def test_a_saved_dataset_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]}).save_to_disk(str(tmp_path / "d"))
    assert [e.label for e in loaders.load_sst2(tmp_path / "d")] == [1, 0]
