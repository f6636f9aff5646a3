"""A Hugging Face decoder split into units that zeroth-order training perturbs and moves as wholes.

    zm = build(catalog.get("opt-125m"), dtype=torch.float32, device=torch.device("cpu"), seed=0)
    for unit in zm.units:                      # the embeddings, each decoder block, the head
        unit.theta                             # its weights: one flat tensor (device or host)
        x = unit.forward(x, batch)             # computes with whatever zm.arena holds for it

The Hugging Face modules are only a shell: every parameter is a view into one flat working buffer,
the arena, at the unit's offset (all decoder blocks share offset 0, since they have one shape). The
trainer writes theta + eps*z into the arena and calls the unit, so theta itself is never perturbed
in place and cannot drift, and a block's weights can live anywhere while the shell stays put.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from zo2bench.catalog import ModelSpec
from zo2bench.engine.fused import FusedLlamaBlock, FusedOPTBlock, rms_norm
from zo2bench.engine.loss import causal_lm_loss


@dataclass
class Segment:
    name: str
    offset: int        # in the unit's flat buffer
    shape: tuple
    init: str          # "normal" | "zeros" | "ones"
    decay: bool        # weight decay applies (not to biases and norm weights)

    @property
    def numel(self) -> int:
        return int(torch.Size(self.shape).numel())


@dataclass
class Unit:
    """Parameters perturbed, updated and moved as one flat buffer."""

    index: int
    name: str                              # "embed", "block.3", "head"
    segments: list[Segment]
    forward: Callable                      # (x, batch) -> x; the head returns the loss
    arena_offset: int = 0
    theta: torch.Tensor | None = None      # the weights, flat
    reads: list[Unit] = field(default_factory=list)  # units whose perturbed weights forward also reads (tied head)
    is_block: bool = False

    @property
    def numel(self) -> int:
        return sum(s.numel for s in self.segments)

    def decay_ranges(self) -> list[tuple[int, int]]:
        return [(s.offset, s.offset + s.numel) for s in self.segments if s.decay]


@dataclass
class Batch:
    """Token ids and the positions whose next token is scored."""

    input_ids: torch.Tensor                # [B, T]
    target_ids: torch.Tensor               # [N] the token each scored position must predict
    target_pos: torch.Tensor | None = None  # [N] rows of the flattened [B, T-1] positions; None means all
    position_ids: torch.Tensor | None = None
    rope: tuple | None = None              # rotary (cos, sin), computed once per batch

    def to(self, device) -> Batch:
        mv = lambda t: None if t is None else t.to(device, non_blocking=True)
        return Batch(mv(self.input_ids), mv(self.target_ids), mv(self.target_pos))


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")


def _zo_fused(layer: nn.Module):
    """The layer's engine/fused.py block where it stands in: the ZO passes (no grad: backprop keeps the Hugging
    Face forward) in eval mode (dropout, where a config has it, is the Hugging Face forward's)."""
    fused = getattr(layer, "zo_fused", None)
    return fused if fused is not None and not torch.is_grad_enabled() and not layer.training else None


# -- families: which modules form each unit, and how each unit computes ------------------------------
class OPTAdapter:
    def split(self, model):
        d = model.model.decoder
        embed = [d.embed_tokens, d.embed_positions, d.project_in]
        head = [d.final_layer_norm, d.project_out, model.lm_head]
        return [m for m in embed if m is not None], list(d.layers), [m for m in head if m is not None]

    def embed(self, model, ids, batch):
        d = model.model.decoder
        x = d.embed_tokens(ids)
        if d.project_in is not None:
            x = d.project_in(x)
        return x + d.embed_positions(None, 0, position_ids=batch.position_ids)

    def block(self, model, layer, x, batch):
        if fused := _zo_fused(layer):
            return fused(x)
        out = layer(x, attention_mask=None, position_ids=batch.position_ids)  # None: SDPA's causal kernel
        return out[0] if isinstance(out, tuple) else out

    def final_hidden(self, model, x):
        d = model.model.decoder
        if d.final_layer_norm is not None:
            x = d.final_layer_norm(x)
        return d.project_out(x) if d.project_out is not None else x

    def materialize_buffers(self, model, device):
        pass  # OPT keeps no buffers

    def fuse_activations(self, model):
        # fc1 and its ReLU as one matmul with a bias+ReLU epilogue (cuBLASLt) in the ZO passes: the [B*T, ffn]
        # product is written once and never re-read by a separate ReLU (8 ms of a 194 ms OPT-1.3B batch-8
        # step on the H100), nor kept beside its rectified copy (32 MiB at the batch-1 peak).
        # Backprop has no derivative for the fused op, so it takes linear then an in-place ReLU.
        # The ZO passes of pre-LayerNorm layers take engine/fused.py's block, which does the same and more.
        for layer in model.model.decoder.layers:
            layer.zo_fused = FusedOPTBlock.of(layer)
            if type(layer.activation_fn) is nn.ReLU:
                layer.fc1.forward = _linear_relu.__get__(layer.fc1)
                layer.activation_fn = nn.Identity()


def _linear_relu(fc: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() or fc.bias is None or x.dim() != 2:
        return torch.relu_(nn.functional.linear(x, fc.weight, fc.bias))
    return torch._addmm_activation(fc.bias, x, fc.weight.t())


class LlamaAdapter:
    def split(self, model):
        m = model.model
        return [m.embed_tokens], list(m.layers), [m.norm, model.lm_head]

    def embed(self, model, ids, batch):
        x = model.model.embed_tokens(ids)
        if batch.rope is None:
            batch.rope = model.model.rotary_emb(x, batch.position_ids)
        return x

    def block(self, model, layer, x, batch):
        if fused := _zo_fused(layer):
            return fused(x, batch.rope)
        out = layer(x, attention_mask=None, position_ids=batch.position_ids, position_embeddings=batch.rope)
        return out[0] if isinstance(out, tuple) else out

    def final_hidden(self, model, x):
        norm = model.model.norm
        if torch.is_grad_enabled() or not hasattr(norm, "variance_epsilon"):
            return norm(x)
        return rms_norm(x.reshape(-1, x.shape[-1]), norm.weight, norm.variance_epsilon).view_as(x)

    def materialize_buffers(self, model, device):
        rot = model.model.rotary_emb  # its inv_freq was computed on the meta device: compute it again
        model.model.rotary_emb = type(rot)(model.config).to(device)

    def fuse_activations(self, model):
        # The ZO passes take engine/fused.py's block (its elementwise work fused; backprop keeps the Hugging
        # Face forward). A layer it does not cover (Qwen3's per-head norms, a sliding window) keeps its own.
        for layer in model.model.layers:
            layer.zo_fused = FusedLlamaBlock.of(layer)


ADAPTERS = {"opt": OPTAdapter(), "llama": LlamaAdapter()}


def import_model_class(spec: ModelSpec):
    """Import the Hugging Face modeling code for spec (seconds, once per process), apart from building."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    return MODEL_FOR_CAUSAL_LM_MAPPING[type(spec.hf_config())]


def meta_model(spec: ModelSpec, dtype: torch.dtype):
    """The Hugging Face model with no storage: a shell whose parameters are to be replaced."""
    import transformers

    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(spec.hf_config(), dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def init_std(model) -> float:
    return float(getattr(model.config, "init_std", None) or getattr(model.config, "initializer_range", 0.02))


def param_kind(module: nn.Module, pname: str) -> str:
    if pname == "bias":
        return "zeros"
    return "ones" if _is_norm(module) else "normal"


def init_tensor_(t: torch.Tensor, kind: str, std: float, gen: torch.Generator) -> None:
    if kind == "normal":
        t.normal_(0.0, std, generator=gen)
    else:
        t.fill_(0.0 if kind == "zeros" else 1.0)


def unit_seed(seed: int, index: int) -> int:
    """Independent streams per (seed, unit), so units can be initialised in any order."""
    x = (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & (2**64 - 1)
    x ^= x >> 31
    return x & (2**63 - 1)


class ZOModel:
    """The shell, its units and its arena."""

    def __init__(self, spec: ModelSpec, model, units: list[Unit], arena: torch.Tensor, device: torch.device, dtype):
        self.spec, self.model, self.units, self.arena = spec, model, units, arena
        self.device, self.dtype = device, dtype

    @property
    def blocks(self) -> list[Unit]:
        return [u for u in self.units if u.is_block]

    def arena_view(self, unit: Unit) -> torch.Tensor:
        return self.arena[unit.arena_offset: unit.arena_offset + unit.numel]

    def make_batch(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> Batch:
        return make_batch(input_ids, self.device, labels)


def make_batch(input_ids: torch.Tensor, device: torch.device, labels: torch.Tensor | None = None) -> Batch:
    """Scored positions from labels (-100 = not scored), HF-style; without labels every next token is."""
    B, T = input_ids.shape
    if labels is None:
        batch = Batch(input_ids, input_ids[:, 1:].reshape(-1))
    else:
        shifted = labels[:, 1:].reshape(-1)
        keep = (shifted != -100).nonzero().flatten()  # on the host, before the batch moves
        batch = Batch(input_ids, shifted[keep], keep)
    batch = batch.to(device)
    batch.position_ids = torch.arange(T, device=device).unsqueeze(0).expand(B, T)
    return batch


def build(spec: ModelSpec, dtype: torch.dtype, device: torch.device, seed: int,
          host_blocks: Callable[[int], torch.Tensor] | None = None) -> ZOModel:
    """Random weights (or a checkpoint's, when spec.source is set), one flat buffer per unit.

    Each unit is initialised on `device` with its own generator, so a model comes out the same
    whichever device later holds it. `host_blocks(numel)`, when given, returns the host buffer a
    block's weights move to right after initialisation (block by block: the device never holds more
    than one block beyond the resident units).
    """
    clock = _Clock()
    model = meta_model(spec, dtype)
    clock.lap("meta_model_s")
    adapter = ADAPTERS[spec.family]
    embed_mods, layers, head_mods = adapter.split(model)

    owner: dict[int, tuple[Unit, Segment]] = {}  # id(parameter) -> where it lives
    units: list[Unit] = []

    def make_unit(name, modules, forward, is_block=False) -> Unit:
        unit = Unit(len(units), name, [], forward, is_block=is_block)
        offset = 0
        for key, sub, pname, p in _unit_params(name, modules):
            if id(p) in owner:
                if owner[id(p)][0] is not unit and owner[id(p)][0] not in unit.reads:
                    unit.reads.append(owner[id(p)][0])
                continue
            kind = param_kind(sub, pname)
            seg = Segment(key, offset, tuple(p.shape), kind, decay=kind == "normal")
            unit.segments.append(seg)
            owner[id(p)] = (unit, seg)
            offset += seg.numel
        units.append(unit)
        return unit

    make_unit("embed", embed_mods, lambda ids, b: adapter.embed(model, ids, b))
    for i, layer in enumerate(layers):
        make_unit(f"block.{i}", [layer], (lambda lyr: lambda x, b: adapter.block(model, lyr, x, b))(layer), True)

    def head_forward(x, b):
        return causal_lm_loss(adapter.final_hidden(model, x), model.lm_head.weight, b)

    head = make_unit("head", head_mods, head_forward)

    # Arena layout: blocks and embeddings at 0; the head after the units it also reads (tied weights).
    head.arena_offset = sum(u.numel for u in head.reads)
    arena_numel = max(max(u.arena_offset + u.numel for u in units), units[0].numel)
    arena = torch.empty(arena_numel, dtype=dtype, device=device)

    views: dict[int, nn.Parameter] = {}
    for sub in model.modules():
        for pname, p in list(sub.named_parameters(recurse=False)):
            if id(p) not in views:
                unit, seg = owner[id(p)]
                start = unit.arena_offset + seg.offset
                views[id(p)] = nn.Parameter(arena[start:start + seg.numel].view(seg.shape), requires_grad=False)
            sub._parameters[pname] = views[id(p)]
    adapter.materialize_buffers(model, device)
    adapter.fuse_activations(model)

    clock.lap("shell_s")
    state = _checkpoint_state(spec, dtype) if spec.source else None
    clock.lap("checkpoint_s")
    std = init_std(model)
    for unit in units:
        theta = torch.empty(unit.numel, dtype=dtype, device=device)
        gen = torch.Generator(device=device).manual_seed(unit_seed(seed, unit.index))
        for seg in unit.segments:
            view = theta[seg.offset: seg.offset + seg.numel].view(seg.shape)
            if state is not None:
                view.copy_(state[seg.name])
            else:
                init_tensor_(view, seg.init, std, gen)
        # No -0.0 anywhere: an update with a zero coefficient adds +-0.0, which turns -0.0 into +0.0 and
        # would break "lr = 0 leaves the weights bitwise unchanged". Numerically the same weights.
        theta.add_(0.0)
        clock.lap("init_s")
        if unit.is_block and host_blocks is not None:
            host = host_blocks(unit.numel)
            clock.lap("host_alloc_s")
            host.copy_(theta)
            theta = host
            clock.lap("to_host_s")
        unit.theta = theta
    zm = ZOModel(spec, model, units, arena, device, dtype)
    zm.build_parts = clock.parts
    return zm


class _Clock:
    """Seconds spent in each part of building, summed over units (device work synchronised per lap)."""

    def __init__(self):
        import time

        self.now, self.parts = time.perf_counter, {}
        self.t = self.now()

    def lap(self, name: str) -> None:
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        t = self.now()
        self.parts[name] = self.parts.get(name, 0.0) + (t - self.t)
        self.t = t


def _checkpoint_state(spec: ModelSpec, dtype) -> dict[str, torch.Tensor]:
    """A checkpoint's weights keyed like the segments ("block.3:fc1.weight"), loaded on the host."""
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(spec.source, dtype=dtype)
    embed_mods, layers, head_mods = ADAPTERS[spec.family].split(hf)
    blocks = [(f"block.{i}", [layer]) for i, layer in enumerate(layers)]
    groups = [("embed", embed_mods), *blocks, ("head", head_mods)]
    out, seen = {}, set()
    for name, modules in groups:
        for key, _, _, p in _unit_params(name, modules):
            if id(p) not in seen:
                seen.add(id(p))
                out[key] = p.detach()
    return out


def _unit_params(name: str, modules: list[nn.Module]):
    """(key, module, parameter name, parameter) in a fixed order; keys like "block.3:0.fc1.weight"."""
    for i, mod in enumerate(modules):
        for mname, sub in mod.named_modules():
            for pname, p in sub.named_parameters(recurse=False):
                yield f"{name}:{i}.{mname}.{pname}" if mname else f"{name}:{i}.{pname}", sub, pname, p
