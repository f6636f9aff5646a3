"""The ladder: OPT-shaped models over two orders of magnitude, on the synthetic language's vocabulary.

    spec = LADDER["ladder-768x12"]     # catalog-style ModelSpec: OPT-125M's shape (768 wide, 12 blocks, 12 heads)
    spec.n_params()                    # 87.2 M (OPT-125M's 125 M less its 50,272-word embedding, here 2,560)
    describe()                         # one line per size: name, shape, parameters

Names say width x depth. Every size has OPT's block (pre-norm, ReLU MLP of 4x the width, learned positions,
tied LM head); only the vocabulary (tasks.tokenizer.VOCAB_SIZE) and the positions (POSITIONS) differ from
the public OPT configurations, so the parameter counts are smaller than the OPT names they echo. These specs
live here, not in zo2bench/catalog.py: they are random shapes until pretrain.py gives them weights.
"""
from __future__ import annotations

from zo2bench.catalog import ModelSpec
from zo2bench.tasks.tokenizer import VOCAB_SIZE

POSITIONS = 256   # the longest sequence a ladder model takes (QA prompts are about 60 tokens)


def _rung(hidden: int, layers: int, heads: int) -> ModelSpec:
    return ModelSpec(f"ladder-{hidden}x{layers}", "opt", hidden, layers, heads, ffn=4 * hidden, vocab=VOCAB_SIZE,
                     positions=POSITIONS)


# 0.28 M, 1.15 M, 5.46 M, 26.7 M, 87.2 M parameters: x311 from the smallest to OPT-125M's shape.
LADDER: dict[str, ModelSpec] = {s.name: s for s in [
    _rung(64, 2, 2),
    _rung(128, 4, 4),
    _rung(256, 6, 4),
    _rung(512, 8, 8),
    _rung(768, 12, 12),     # OPT-125M's shape
]}


def get(name: str) -> ModelSpec:
    from zo2bench.errors import UserError

    if name not in LADDER:
        raise UserError(f"unknown ladder model '{name}'; the ladder: {', '.join(LADDER)}")
    return LADDER[name]


def describe() -> list[str]:
    return [f"{s.name}: hidden {s.hidden}, {s.layers} blocks, {s.heads} heads, {s.n_params():,} parameters"
            for s in LADDER.values()]
