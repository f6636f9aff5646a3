"""The catalog's exact counts against the Hugging Face model itself, built on the meta device (no storage)."""
import pytest
import torch

from zo2bench import catalog
from zo2bench.engine.model import ADAPTERS, meta_model


def _numel(modules) -> int:
    seen, n = set(), 0
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
    return n


@pytest.mark.parametrize("name", list(catalog.MODELS))
def test_counts_match_the_hugging_face_model(name):
    spec = catalog.get(name)
    model = meta_model(spec, torch.float16)
    assert spec.n_params() == sum(p.numel() for p in model.parameters()), "every parameter, tied ones once"
    embed, layers, head = ADAPTERS[spec.family].split(model)
    assert len(layers) == spec.layers
    assert {_numel([layer]) for layer in layers} == {spec.block_params()}
    assert spec.embed_params() == _numel(embed)
    assert spec.head_params() == _numel(head) - (_numel(embed) + _numel(head) - _numel(embed + head))
    assert model.config.tie_word_embeddings == spec.tied


def test_opt_175b_has_its_published_size():
    assert catalog.get("opt-175b").n_params() == 174_604_468_224
