"""Examples into token batches for the engine: the prompt unscored (labels = -100), the target scored.

    enc = Encoder(tokenizer, seq=128)
    ids, n_prompt = enc.pair(example)         # [bos] + prompt + target (+ eos for generation and QA)
    batch = enc.train_batch(examples, device) # engine Batch: loss over the targets' tokens only
    input_ids, labels = collate([enc.pair(e) for e in examples], enc.pad_id)

Rows are right-padded to the longest in the batch: the engine's attention is causal with no mask, so a
real token never sees the padding after it, and padded positions are never scored. A pair longer than
`seq` loses the start of its prompt (after <s>), as MeZO truncates long contexts; `truncated` counts them.
"""
from __future__ import annotations

import torch

from zo2bench.tasks.examples import Example
from zo2bench.tasks.tokenizer import TextTokenizer

IGNORE = -100


class Encoder:
    def __init__(self, tokenizer: TextTokenizer, seq: int):
        self.tok, self.seq = tokenizer, seq
        self.pad_id = tokenizer.pad_id
        self.truncated = 0
        self._cache: dict = {}

    def prompt_ids(self, ex: Example) -> list[int]:
        ids = self.tok.encode(ex.prompt)
        return ([self.tok.bos_id] if self.tok.bos_id is not None else []) + ids

    def target_ids(self, ex: Example, text: str | None = None) -> list[int]:
        ids = self.tok.encode(ex.target if text is None else text)
        if ex.task != "classification" and self.tok.eos_id is not None:
            ids = ids + [self.tok.eos_id]
        return ids

    def fit(self, prompt: list[int], room: int) -> list[int]:
        """The prompt cut to leave `room` tokens of the sequence free (its start after <s> goes first)."""
        keep = self.seq - room
        if keep < 2:
            raise ValueError(f"seq = {self.seq} leaves no room for a prompt beside {room} target tokens")
        if len(prompt) <= keep:
            return prompt
        self.truncated += 1
        return prompt[:1] + prompt[len(prompt) - keep + 1:]

    def pair(self, ex: Example, target: str | None = None) -> tuple[list[int], int]:
        key = (ex, target)
        if key not in self._cache:
            t = self.target_ids(ex, target)
            p = self.fit(self.prompt_ids(ex), len(t))
            self._cache[key] = (p + t, len(p))
        return self._cache[key]

    def train_batch(self, examples: list[Example], device):
        from zo2bench.engine.model import make_batch

        ids, labels = collate([self.pair(e) for e in examples], self.pad_id)
        return make_batch(ids, device, labels)


def collate(pairs: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) [B, T], T the longest pair; labels = the ids from each pair's n_prompt on."""
    T = max(len(ids) for ids, _ in pairs)
    input_ids = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), T), IGNORE, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(pairs):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        labels[i, n_prompt:len(ids)] = input_ids[i, n_prompt:len(ids)]
    return input_ids, labels
