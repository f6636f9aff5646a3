"""Dev and test metrics of a model on examples, through its logits at chosen positions.

    metrics = evaluate(examples, trainer.logits, Encoder(tok, seq=128), device, batch_size=64)
    # classification: {"accuracy", "loss"}; generation: {"exact_match", "token_accuracy", "loss"};
    # qa: {"exact_match", "f1", "token_accuracy", "loss"}; all metrics in [0, 1], loss in nats per token

`logits_fn(batch)` returns fp32 logits [N, V] at the batch's scored positions, in row-major order (the
engine's MeZO.logits and FirstOrder.logits: the current weights, no step, no perturbation).
- classification scores the candidates as MeZO does: with one-token label words, the next-token log-probs
  after the prompt, compared (one forward per example); otherwise each candidate's summed log-prob.
- generation: the target scored under teacher forcing; token_accuracy counts the positions whose argmax is
  the target token (end-of-sequence included), exact_match the examples with every position right. That
  is exactly the exact match of greedy decoding: greedy reproduces the target iff each argmax along it does.
- qa: the answer decoded greedily (at most max_new_tokens, until end-of-sequence) and compared with the gold
  answers by SQuAD's exact match and F1; teacher forcing gives its token_accuracy and loss beside.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from zo2bench.tasks import metrics
from zo2bench.tasks.encode import IGNORE, Encoder, collate
from zo2bench.tasks.examples import Example

MAX_NEW_TOKENS = 16


def _make_batch(input_ids, labels, device):
    from zo2bench.engine.model import make_batch

    return make_batch(input_ids, device, labels)


@torch.no_grad()
def next_token_logits(logits_fn: Callable, prompts: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """[B, V] logits of the token after each prompt."""
    T = max(len(p) for p in prompts) + 1
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    labels = torch.full((len(prompts), T), IGNORE, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, :len(p)] = torch.tensor(p)
        labels[i, len(p)] = 0  # position len(p) - 1 is scored: its logits predict the next token
    return logits_fn(_make_batch(ids, labels, device)).float()


@torch.no_grad()
def teacher_forced(logits_fn: Callable, pairs: list[tuple[list[int], int]], pad_id: int, device):
    """Per pair: (tokens right, tokens, summed negative log-likelihood) of its target."""
    ids, labels = collate(pairs, pad_id)
    logits = logits_fn(_make_batch(ids, labels, device)).float()
    targets = labels[:, 1:][labels[:, 1:] != IGNORE].to(logits.device)
    right = (logits.argmax(-1) == targets).cpu()
    nll = (torch.logsumexp(logits, -1) - logits.gather(1, targets[:, None]).squeeze(1)).cpu()
    out, start = [], 0
    for ids_, n_prompt in pairs:
        n = len(ids_) - n_prompt
        out.append((int(right[start:start + n].sum()), n, float(nll[start:start + n].sum())))
        start += n
    return out


@torch.no_grad()
def greedy(logits_fn: Callable, enc: Encoder, examples: list[Example], device,
           max_new_tokens: int = MAX_NEW_TOKENS) -> list[str]:
    """Greedy continuations of the prompts (no cache: each token is one forward over the whole sequence)."""
    eos = enc.tok.eos_id
    seqs = [enc.fit(enc.prompt_ids(e), max_new_tokens) for e in examples]
    new: list[list[int]] = [[] for _ in examples]
    live = list(range(len(examples)))
    for _ in range(max_new_tokens):
        if not live:
            break
        nxt = next_token_logits(logits_fn, [seqs[i] + new[i] for i in live], enc.pad_id, device).argmax(-1).tolist()
        still = []
        for i, t in zip(live, nxt):
            if t == eos:
                continue
            new[i].append(t)
            still.append(i)
        live = still
    return [enc.tok.decode(n) for n in new]


def _batches(items: list, size: int):
    for s in range(0, len(items), size):
        yield items[s:s + size]


def classify(logits_fn, enc: Encoder, examples: list[Example], device) -> tuple[list[int], list[float]]:
    """Predicted labels, and each example's loss on its gold label word (the training loss)."""
    cands = examples[0].candidates
    cand_ids = [enc.tok.encode(c) for c in cands]
    if all(len(c) == 1 for c in cand_ids):
        logp = torch.log_softmax(next_token_logits(logits_fn, [enc.pair(e)[0][:enc.pair(e)[1]] for e in examples],
                                                  enc.pad_id, device), -1).cpu()
        scores = logp[:, [c[0] for c in cand_ids]]
        gold = torch.tensor([e.label for e in examples])
        return scores.argmax(-1).tolist(), (-scores.gather(1, gold[:, None]).squeeze(1)).tolist()
    preds, losses = [], []
    for e in examples:
        tf = teacher_forced(logits_fn, [enc.pair(e, c) for c in e.candidates], enc.pad_id, device)
        ll = [-nll for _, _, nll in tf]
        preds.append(max(range(len(ll)), key=ll.__getitem__))
        losses.append(tf[e.label][2] / tf[e.label][1])
    return preds, losses


def evaluate(examples: list[Example], logits_fn: Callable, enc: Encoder, device, batch_size: int = 64,
             max_new_tokens: int = MAX_NEW_TOKENS) -> dict[str, float]:
    if not examples:
        raise ValueError("no examples to evaluate")
    task = examples[0].task
    if task == "classification":
        preds, losses = [], []
        for chunk in _batches(examples, batch_size):
            p, loss = classify(logits_fn, enc, chunk, device)
            preds += p
            losses += loss
        return {"accuracy": metrics.accuracy(preds, [e.label for e in examples]), "loss": metrics.mean(losses)}
    tf = []
    for chunk in _batches(examples, batch_size):
        tf += teacher_forced(logits_fn, [enc.pair(e) for e in chunk], enc.pad_id, device)
    out = {"exact_match": metrics.mean(float(r == n) for r, n, _ in tf),
           "token_accuracy": sum(r for r, _, _ in tf) / sum(n for _, n, _ in tf),
           "loss": sum(x for _, _, x in tf) / sum(n for _, n, _ in tf)}
    if task == "qa":
        texts = []
        for chunk in _batches(examples, batch_size):
            texts += greedy(logits_fn, enc, chunk, device, max_new_tokens)
        out["exact_match"] = metrics.mean(metrics.exact_match(t, e.answers) for t, e in zip(texts, examples))
        out["f1"] = metrics.mean(metrics.f1(t, e.answers) for t, e in zip(texts, examples))
    return out
