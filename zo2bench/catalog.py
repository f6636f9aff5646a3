"""The models the suite knows: public shapes as data, and exact parameter counts from the architecture.

    spec = catalog.get("opt-1.3b")          # UserError naming close matches if unknown
    spec.n_params(), spec.block_params(), spec.hf_config()
    catalog.resolve("path/to/local/dir")    # a directory with config.json, or a Hugging Face id

Counts are derived layer by layer from the architecture (the tests check them against the numel of
the Hugging Face model built on the meta device), never from a rule of thumb.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str                 # "opt" or "llama" (Llama-style: RMSNorm, rotary, gated MLP; Qwen2 adds qkv bias)
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    positions: int              # longest sequence the model takes
    tied: bool = True           # LM head shares the token embedding
    proj_dim: int | None = None  # OPT-350m: embeddings of 512 projected in and out of the 1024 hidden size
    pre_norm: bool = True       # OPT-350m applies layer norm after attention and has no final layer norm
    kv_heads: int | None = None  # Llama-style grouped-query attention
    qkv_bias: bool = False      # Qwen2
    rope_theta: float = 10000.0
    hf_model_type: str | None = None  # the Hugging Face model_type for llama-family variants
    source: str | None = None   # a Hugging Face id or directory, for models loaded with from_pretrained
    hf_overrides: dict = field(default_factory=dict, compare=False)

    # -- exact parameter counts ----------------------------------------------------------------
    def embed_params(self) -> int:
        if self.family == "opt":
            p = self.proj_dim or self.hidden
            n = self.vocab * p + (self.positions + 2) * self.hidden  # OPT offsets learned positions by 2
            if self.proj_dim:
                n += p * self.hidden  # project_in, no bias
            return n
        return self.vocab * self.hidden

    def block_params(self) -> int:
        h, f = self.hidden, self.ffn
        if self.family == "opt":
            return 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
        kv = (self.kv_heads or self.heads) * (h // self.heads)
        attn = h * h + 2 * h * kv + h * h + ((h + 2 * kv) if self.qkv_bias else 0)
        return attn + 3 * h * f + 2 * h

    def head_params(self) -> int:
        """Final norm, output projection and an untied LM head (a tied one is counted in the embeddings)."""
        if self.family == "opt":
            p = self.proj_dim or self.hidden
            n = (2 * self.hidden if self.pre_norm else 0) + (self.hidden * p if self.proj_dim else 0)
            return n + (0 if self.tied else self.vocab * p)
        return self.hidden + (0 if self.tied else self.vocab * self.hidden)

    def n_params(self) -> int:
        return self.embed_params() + self.layers * self.block_params() + self.head_params()

    # -- Hugging Face config -------------------------------------------------------------------
    def hf_config(self):
        import transformers

        if self.source:
            cfg = transformers.AutoConfig.from_pretrained(self.source)
        elif self.family == "opt":
            cfg = transformers.OPTConfig(
                hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
                ffn_dim=self.ffn, vocab_size=self.vocab, max_position_embeddings=self.positions,
                word_embed_proj_dim=self.proj_dim or self.hidden, do_layer_norm_before=self.pre_norm,
                tie_word_embeddings=self.tied, dropout=0.0, attention_dropout=0.0,
            )
        else:
            cls = transformers.Qwen2Config if self.hf_model_type == "qwen2" else transformers.LlamaConfig
            cfg = cls(
                hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
                num_key_value_heads=self.kv_heads or self.heads, intermediate_size=self.ffn,
                vocab_size=self.vocab, max_position_embeddings=self.positions, tie_word_embeddings=self.tied,
                rope_theta=self.rope_theta,
            )
        for k, v in self.hf_overrides.items():
            setattr(cfg, k, v)
        return cfg


def _opt(name, hidden, layers, heads, **kw):
    return ModelSpec(name, "opt", hidden, layers, heads, ffn=4 * hidden, vocab=50272, positions=2048, **kw)


# The OPT family by its public configurations (facebook/opt-* config.json).
_MODELS = [
    _opt("opt-125m", 768, 12, 12),
    _opt("opt-350m", 1024, 24, 16, proj_dim=512, pre_norm=False),
    _opt("opt-1.3b", 2048, 24, 32),
    _opt("opt-2.7b", 2560, 32, 32),
    _opt("opt-6.7b", 4096, 32, 32),
    _opt("opt-13b", 5120, 40, 40),
    _opt("opt-30b", 7168, 48, 56),
    _opt("opt-66b", 9216, 64, 72),
    _opt("opt-175b", 12288, 96, 96),
    # The shape of the peer's benchmarks: OPT-1.3B with its own LM head (1.419 B parameters).
    _opt("opt-1.3b-untied", 2048, 24, 32, tied=False),
    # Llama-style decoders (meta-llama/Llama-2-*-hf, meta-llama/Llama-3.2-1B, Qwen/Qwen2.5-0.5B config.json).
    ModelSpec("llama2-7b", "llama", 4096, 32, 32, ffn=11008, vocab=32000, positions=4096, tied=False),
    ModelSpec("llama2-13b", "llama", 5120, 40, 40, ffn=13824, vocab=32000, positions=4096, tied=False),
    ModelSpec("llama3.2-1b", "llama", 2048, 16, 32, ffn=8192, vocab=128256, positions=131072, tied=True,
              kv_heads=8, rope_theta=500000.0),
    ModelSpec("qwen2.5-0.5b", "llama", 896, 24, 14, ffn=4864, vocab=151936, positions=32768, tied=True,
              kv_heads=2, qkv_bias=True, rope_theta=1000000.0, hf_model_type="qwen2"),
    # Tiny debug models: the real code path in seconds on a CPU (tests, cpu profiles).
    ModelSpec("opt-tiny", "opt", 64, 4, 4, ffn=256, vocab=1024, positions=512),
    ModelSpec("opt-tiny-untied", "opt", 64, 4, 4, ffn=256, vocab=1024, positions=512, tied=False),
    ModelSpec("opt-tiny-350m", "opt", 64, 4, 4, ffn=256, vocab=1024, positions=512, proj_dim=32, pre_norm=False),
    ModelSpec("llama-tiny", "llama", 64, 4, 4, ffn=176, vocab=1024, positions=512, tied=False, kv_heads=2),
    ModelSpec("qwen-tiny", "llama", 64, 4, 4, ffn=176, vocab=1024, positions=512, tied=True, kv_heads=2,
              qkv_bias=True, hf_model_type="qwen2"),
]
MODELS: dict[str, ModelSpec] = {m.name: m for m in _MODELS}


def get(name: str) -> ModelSpec:
    from zo2bench.errors import UserError

    if name in MODELS:
        return MODELS[name]
    close = difflib.get_close_matches(name, MODELS, n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(MODELS)}"
    raise UserError(f"unknown model '{name}'{hint} (or give a local directory holding config.json)")


def _spec_from_hf_config(name: str, cfg, source: str) -> ModelSpec:
    from zo2bench.errors import UserError

    mt = cfg.model_type
    if mt == "opt":
        proj = cfg.word_embed_proj_dim if cfg.word_embed_proj_dim != cfg.hidden_size else None
        return ModelSpec(name, "opt", cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.ffn_dim,
                         cfg.vocab_size, cfg.max_position_embeddings, tied=cfg.tie_word_embeddings, proj_dim=proj,
                         pre_norm=cfg.do_layer_norm_before, source=source)
    if mt in ("llama", "qwen2", "mistral"):
        return ModelSpec(name, "llama", cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
                         cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings,
                         tied=cfg.tie_word_embeddings, kv_heads=cfg.num_key_value_heads, qkv_bias=mt == "qwen2",
                         hf_model_type=mt, source=source)
    raise UserError(f"model '{name}' is a '{mt}' model; zo2bench runs opt, llama, qwen2 and mistral decoders")


def resolve(name: str) -> ModelSpec:
    """A catalog name, or a local directory / Hugging Face id holding a config (weights via from_pretrained)."""
    from zo2bench.errors import UserError

    if name in MODELS:
        return MODELS[name]
    if os.path.isdir(name):
        if not os.path.isfile(os.path.join(name, "config.json")):
            raise UserError(f"'{name}' is a directory without config.json")
        import transformers

        return _spec_from_hf_config(name, transformers.AutoConfig.from_pretrained(name), source=name)
    if "/" in name and not os.path.exists(name):
        import transformers

        try:  # a hub id works only where its files are cached: nothing is downloaded here
            cfg = transformers.AutoConfig.from_pretrained(name, local_files_only=True)
        except Exception:
            raise UserError(f"'{name}' is neither a catalog model nor a local directory, and no cached "
                            f"copy of that Hugging Face id was found (nothing is downloaded)") from None
        return _spec_from_hf_config(name, cfg, source=name)
    return get(name)

