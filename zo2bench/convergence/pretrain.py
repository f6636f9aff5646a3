"""Pretraining a ladder model with backprop on the synthetic corpus, cached on disk under a digest of its recipe.

    pre = pretrained("ladder-64x2", PretrainRecipe(tokens=300_000), data, device="cpu")
    pre.path          # a Hugging Face model directory (config.json, model.safetensors, tokenizer.json,
                      # pretrain.json): catalog.resolve(str(pre.path)) loads it through from_pretrained
    pre.info          # pretrain.json: recipe, data digest, losses, held-out loss, seconds, weights sha256
    pre.built_now     # False when the cache already held it

The recipe (token budget, sequence, batch, peak lr, warm-up, seed, dtype as resolved on the device) with the
model's shape, the data's digest and PRETRAIN_VERSION names the cache entry. One epoch over a fixed token
budget, the same for every size: AdamW (betas 0.9/0.95, weight decay 0.01 on matrices), linear warm-up
then cosine decay to a tenth. The peak lr falls as 1/width past lr_width (lr x min(1, lr_width/hidden)),
the usual care for wider models. On CUDA the forward runs under bf16 autocast with fp32 master weights, with
deterministic algorithms asked for (warn-only): the same recipe on the same GPU type gives the same weights;
each fine-tuning row records the weights' sha256 all the same.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from zo2bench.convergence import ladder
from zo2bench.tasks.cache import build_once, cache_root, digest, file_sha256
from zo2bench.tasks.synthetic import SyntheticData, corpus_array

PRETRAIN_VERSION = 1
HELDOUT_SEQUENCES = 64


@dataclass(frozen=True)
class PretrainRecipe:
    tokens: int = 4_000_000     # the budget, the same for every size (one epoch, no token seen twice)
    seq: int = 128              # tokens per sequence (documents packed, separated by </s>)
    batch: int = 32             # sequences per step
    lr: float = 1e-3            # AdamW peak for width <= lr_width; x lr_width/hidden for wider models
    lr_width: int = 256         # the width from which the peak lr falls as 1/width
    warmup: float = 0.05        # fraction of the steps
    weight_decay: float = 0.01
    seed: int = 0               # initial weights
    dtype: str = "auto"         # bf16 autocast on CUDA, fp32 on the CPU (auto), or fp32 / bf16

    @classmethod
    def from_dict(cls, d: dict) -> PretrainRecipe:
        return cls(**d)

    def steps(self) -> int:
        return max(1, self.tokens // (self.seq * self.batch))


@dataclass(frozen=True)
class Pretrained:
    name: str
    path: Path
    info: dict
    built_now: bool


def peak_lr(recipe: PretrainRecipe, hidden: int) -> float:
    return recipe.lr * min(1.0, recipe.lr_width / hidden)


def lr_at(step: int, steps: int, peak: float, warmup: float) -> float:
    w = max(1, int(warmup * steps))
    if step < w:
        return peak * (step + 1) / w
    progress = (step - w) / max(1, steps - w)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _dtype_name(recipe: PretrainRecipe, dev: torch.device) -> str:
    return ("bf16" if dev.type == "cuda" else "fp32") if recipe.dtype == "auto" else recipe.dtype


def entry_digest(name: str, recipe: PretrainRecipe, data: SyntheticData, dtype: str) -> str:
    spec = ladder.get(name)
    shape = {k: getattr(spec, k) for k in ("family", "hidden", "layers", "heads", "ffn", "vocab", "positions")}
    return digest({"shape": shape, "recipe": {**asdict(recipe), "dtype": dtype}, "data": data.digest,
                   "version": PRETRAIN_VERSION})


def pretrained(name: str, recipe: PretrainRecipe, data: SyntheticData, device: str,
               root: Path | None = None, on_progress: Callable[[int, int, float], None] | None = None) -> Pretrained:
    """The pretrained model `name` of the ladder from the cache, pretraining it now if it is not there."""
    from zo2bench.devices import resolve_device

    dev = resolve_device(device)
    dtype = _dtype_name(recipe, dev)
    final = (root or cache_root()) / "pretrained" / f"{name}-{entry_digest(name, recipe, data, dtype)[:16]}"
    def build(tmp: Path) -> None:
        with torch.cuda.device(dev) if dev.type == "cuda" else nullcontext():
            _pretrain(tmp, name, recipe, data, dev, dtype, on_progress)

    path, built = build_once(final, build)
    return Pretrained(name, path, json.loads((path / "pretrain.json").read_text()), built)


def _pretrain(out: Path, name: str, recipe: PretrainRecipe, data: SyntheticData, dev: torch.device, dtype: str,
              on_progress) -> None:
    from zo2bench.devices import torch_dtype
    from zo2bench.engine.fo import FirstOrder
    from zo2bench.engine.model import make_batch
    from zo2bench.engine.trainer import params_digest

    spec = ladder.get(name)
    steps = recipe.steps()
    t0 = time.perf_counter()
    stream = corpus_array(data, steps * recipe.batch * recipe.seq)
    seqs = torch.from_numpy(stream.astype("int64")).view(-1, recipe.seq)
    held = torch.from_numpy(corpus_array(data, HELDOUT_SEQUENCES * recipe.seq, "heldout").astype("int64")).view(
        -1, recipe.seq)
    corpus_s = time.perf_counter() - t0

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(recipe.seed)
    try:
        peak = peak_lr(recipe, spec.hidden)
        fo = FirstOrder(spec, "fo-adamw", torch_dtype(dtype), dev, peak, recipe.weight_decay, recipe.seed)
        for g in fo.opt.param_groups:
            g["betas"] = (0.9, 0.95)
        losses, t1 = [], time.perf_counter()
        for step in range(steps):
            for g in fo.opt.param_groups:
                g["lr"] = lr_at(step, steps, peak, recipe.warmup)
            batch = make_batch(seqs[step * recipe.batch:(step + 1) * recipe.batch], dev)
            loss = fo.step(batch, step)["loss"].item()
            if not math.isfinite(loss):
                raise RuntimeError(f"pretraining {name}: non-finite loss at step {step} (lr {peak:g})")
            losses.append(round(loss, 5))
            if on_progress and (step % 20 == 0 or step == steps - 1):
                on_progress(step + 1, steps, loss)
        train_s = time.perf_counter() - t1
        held_losses = [fo_loss(fo, make_batch(held[i:i + recipe.batch], dev))
                       for i in range(0, len(held), recipe.batch)]
    finally:
        torch.use_deterministic_algorithms(was_deterministic)

    model = fo.model
    model.config.pad_token_id, model.config.bos_token_id, model.config.eos_token_id = (
        data.tokenizer.pad_id, data.tokenizer.bos_id, data.tokenizer.eos_id)
    model.save_pretrained(out)
    shutil.copy(data.path / "tokenizer.json", out / "tokenizer.json")
    info = {"name": name, "n_params": spec.n_params(), "recipe": asdict(recipe), "dtype": dtype,
            "device": str(dev), "peak_lr": peak, "steps": steps, "tokens": steps * recipe.batch * recipe.seq,
            "data_digest": data.digest, "version": PRETRAIN_VERSION,
            "loss_first": losses[0], "loss_last": losses[-1], "losses_every_10": losses[::10],
            "heldout_loss": sum(held_losses) / len(held_losses), "corpus_s": round(corpus_s, 3),
            "train_s": round(train_s, 3), "tokens_per_s": steps * recipe.batch * recipe.seq / train_s,
            "weights_sha256": params_digest(fo.parameters()),
            "safetensors_sha256": file_sha256(out / "model.safetensors"), "torch": torch.__version__}
    (out / "pretrain.json").write_text(json.dumps(info, indent=1) + "\n")


@torch.no_grad()
def fo_loss(fo, batch) -> float:
    """The next-token loss of the model as it stands (no step), as the training loss computes it."""
    from zo2bench.engine.loss import causal_lm_loss

    with torch.autocast(fo.device.type, dtype=fo.dtype, enabled=fo.autocast):
        hidden = fo.model.model(input_ids=batch.input_ids, position_ids=batch.position_ids).last_hidden_state
        return float(causal_lm_loss(hidden, fo.model.lm_head.weight, batch))
