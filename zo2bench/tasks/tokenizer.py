"""Tokenizers: the synthetic language's own (built with the `tokenizers` library), and any tokenizer.json.

    tok = build_tokenizer(lexicon(LanguageRecipe()))   # word level: every word of the language is one token
    tok.save("data/tokenizer.json"); tok = load_tokenizer("data/tokenizer.json")
    tok.encode("the bako is great ."), tok.decode(ids), tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size

The synthetic tokenizer is word level over a vocabulary fixed by construction (special tokens, the function
words, punctuation, the lexicon, then reserved tokens up to VOCAB_SIZE), so building it twice gives the same
ids on every machine, and the ladder's models can state their vocabulary size before any data exists. Real
data come with their model's tokenizer: load_tokenizer() takes any Hugging Face tokenizer.json (a BPE one
such as OPT's included); its special tokens are found by their usual names.
"""
from __future__ import annotations

from pathlib import Path

from zo2bench.errors import UserError
from zo2bench.tasks.language import FUNCTION_WORDS, PUNCTUATION, Lexicon

VOCAB_SIZE = 2560        # the ladder's vocabulary: the language's ~2,450 tokens, rounded up to a multiple of 128
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")   # ids 0-3, in OPT's order


class TextTokenizer:
    """A `tokenizers.Tokenizer` with the ids a prompt needs: bos, eos, pad."""

    def __init__(self, tok, source: str = ""):
        self.tok, self.source = tok, source
        vocab = tok.get_vocab()

        def first(*names):
            return next((vocab[n] for n in names if n in vocab), None)

        self.bos_id = first("<s>", "<|begin_of_text|>", "<|endoftext|>", "</s>")
        self.eos_id = first("</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>")
        self.pad_id = first("<pad>", "<|pad|>", "<|finetune_right_pad_id|>")
        if self.pad_id is None:
            self.pad_id = self.eos_id if self.eos_id is not None else 0
        self.vocab_size = tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))


def build_tokenizer(lex: Lexicon) -> TextTokenizer:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokens = [*SPECIALS, *FUNCTION_WORDS, *PUNCTUATION, *lex.all_words()]
    if len(tokens) > VOCAB_SIZE:
        raise ValueError(f"the language has {len(tokens)} tokens, more than VOCAB_SIZE = {VOCAB_SIZE}")
    tokens += [f"<extra_{i}>" for i in range(VOCAB_SIZE - len(tokens))]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()   # words and runs of punctuation
    tok.add_special_tokens(list(SPECIALS))
    return TextTokenizer(tok, "synthetic")


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """A tokenizer.json, or a directory holding one (a model directory)."""
    from tokenizers import Tokenizer

    p = Path(path)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise UserError(f"{p}: no tokenizer.json (a model directory for real data needs its tokenizer.json)")
    try:
        return TextTokenizer(Tokenizer.from_file(str(p)), str(p))
    except Exception as e:  # the library raises its own exception types for a damaged file
        raise UserError(f"{p}: not a tokenizer.json the tokenizers library reads ({e})") from None
