"""One run's configuration: a frozen dataclass with commented defaults.

    cfg = RunConfig(model="opt-125m", mode="zo2", steps=5, seq=64, device="cpu")
    cfg = cfg.replace(batch=4)          # variants start from a base and change a field or two
    RunConfig.from_dict(cfg.as_dict())  # round-trips through the JSON record
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODES = ("mezo", "zo2", "fo-sgd", "fo-adamw")
ZO_MODES = ("mezo", "zo2")
DTYPES = ("fp32", "fp16", "bf16")


@dataclass(frozen=True)
class RunConfig:
    model: str = "opt-125m"      # a catalog name, a Hugging Face id or a local directory
    mode: str = "zo2"            # mezo | zo2 | fo-sgd | fo-adamw
    steps: int = 5               # measured steps
    warmup: int = 0              # steps run before the measured ones, reported apart
    batch: int = 1
    seq: int = 2048              # tokens per example
    dtype: str = "fp16"          # weights and activations; fo-* keep fp32 masters and autocast to this
    seed: int = 0                # seeds the random weights, the data and every step's perturbation
    device: str = "auto"         # auto | cpu | cuda | cuda:N
    lr: float = 1e-6             # MeZO's usual order of magnitude for OPT fine-tuning
    eps: float = 1e-3            # perturbation scale, MeZO's default
    weight_decay: float = 0.0    # not applied to biases and norm weights
    prefetch: int = 1            # zo2: blocks uploaded ahead of the one computing
    gpu_budget_gib: float | None = None  # zo2: keep as many blocks resident as fit in this budget (GiB)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
