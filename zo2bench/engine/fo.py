"""The backprop baselines: fo-sgd and fo-adamw, mixed precision as fine-tuning is normally done.

    fo = FirstOrder(spec, mode="fo-adamw", dtype=torch.bfloat16, device=dev, lr=1e-5, weight_decay=0.0, seed=0)
    out = fo.step(batch, t=0)    # {"loss": 0-d tensor}, the same face as the ZO trainer's step
    fo.logits(batch)             # fp32 [N, V] at batch's scored positions, as MeZO.logits (no step)

fp32 master weights, gradients and (AdamW) two moments on the device; the forward runs in the run's
dtype under autocast (fp16 adds a gradient scaler). The loss is the same chunked causal-LM loss as the
ZO modes.
"""
from __future__ import annotations

import torch

from zo2bench.catalog import ModelSpec
from zo2bench.engine.loss import causal_lm_loss, scored_logits
from zo2bench.engine.model import ADAPTERS, init_std, init_tensor_, meta_model, param_kind, unit_seed


class FirstOrder:
    def __init__(self, spec: ModelSpec, mode: str, dtype: torch.dtype, device: torch.device,
                 lr: float, weight_decay: float, seed: int):
        self.device, self.dtype = device, dtype
        if spec.source:
            import transformers

            model = transformers.AutoModelForCausalLM.from_pretrained(spec.source, dtype=torch.float32,
                                                                      attn_implementation="sdpa").to(device)
        else:
            model = meta_model(spec, torch.float32).to_empty(device=device)
            model.tie_weights()  # to_empty gives each parameter storage of its own, a tied LM head's too
            ADAPTERS[spec.family].materialize_buffers(model, device)
            std, seen = init_std(model), set()
            for mod in model.modules():
                for pname, p in mod.named_parameters(recurse=False):
                    if id(p) not in seen:
                        seen.add(id(p))
                        gen = torch.Generator(device=device).manual_seed(unit_seed(seed, len(seen)))
                        with torch.no_grad():
                            init_tensor_(p, param_kind(mod, pname), std, gen)
        self.model = model.train()
        decay, no_decay, seen = [], [], set()
        for mod in model.modules():
            for pname, p in mod.named_parameters(recurse=False):
                if id(p) not in seen:  # a tied LM head is the embedding's parameter: once in the optimizer
                    seen.add(id(p))
                    (decay if param_kind(mod, pname) == "normal" else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.opt = (torch.optim.AdamW(groups, lr=lr) if mode == "fo-adamw" else torch.optim.SGD(groups, lr=lr))
        self.autocast = dtype != torch.float32
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16 and device.type == "cuda")

    def parameters(self):
        return list(self.model.parameters())

    def flush(self) -> None:
        pass  # every update is applied within its step

    def offload_info(self) -> dict:
        return {"pinned_host_bytes": 0, "resident_blocks": None}

    def close(self) -> None:
        pass

    @torch.no_grad()
    def logits(self, batch) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            hidden = self.model.model(input_ids=batch.input_ids, position_ids=batch.position_ids).last_hidden_state
            return scored_logits(hidden, self.model.lm_head.weight, batch)

    def step(self, batch, t: int = 0) -> dict:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            hidden = self.model.model(input_ids=batch.input_ids, position_ids=batch.position_ids).last_hidden_state
            loss = causal_lm_loss(hidden, self.model.lm_head.weight, batch)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        return {"loss": loss.detach()}
