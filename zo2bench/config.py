"""One run's configuration: a frozen dataclass with commented defaults, and the one place its values are checked.

    cfg = RunConfig(model="opt-125m", mode="zo2", steps=5, seq=64, device="cpu")
    cfg = cfg.replace(batch=4)          # variants start from a base and change a field or two
    RunConfig.from_dict(cfg.as_dict())  # round-trips through the JSON record
    check(cfg)                          # UserError naming the first bad field (model and device: engine/trainer.py)
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from zo2bench.errors import UserError

MODES = ("mezo", "zo2", "fo-sgd", "fo-adamw")
ZO_MODES = ("mezo", "zo2")
DP_REDUCES = ("rows", "scalars")
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}  # the one table of dtype names; torch's types: devices.torch_dtype
DTYPES = tuple(DTYPE_BYTES)


@dataclass(frozen=True)
class RunConfig:
    model: str = "opt-125m"      # a catalog name, a Hugging Face id or a local directory
    mode: str = "zo2"            # mezo | zo2 | fo-sgd | fo-adamw
    steps: int = 5               # measured steps
    warmup: int = 0              # steps run before the measured ones, reported apart
    batch: int = 1
    seq: int = 2048              # tokens per example
    dtype: str = "auto"          # fp32 | fp16 | bf16 | auto (fp16 on a GPU, fp32 on a CPU); fo-* keep fp32
                                 # masters and autocast to this
    seed: int = 0                # seeds the random weights, the data and every step's perturbation
    device: str = "auto"         # auto | cpu | cuda | cuda:N
    lr: float = 1e-6             # MeZO's usual order of magnitude for OPT fine-tuning
    eps: float = 1e-3            # perturbation scale, MeZO's default
    weight_decay: float = 0.0    # not applied to biases and norm weights
    prefetch: int = 1            # zo2: blocks uploaded ahead of the one computing
    gpu_budget_gib: float | None = None  # zo2: keep as many blocks resident as fit in this budget (GiB)
    writeback_every: int = 1     # zo2: copy a streamed block back to host memory every this many visits; in
                                 # between, its updates are replayed on upload (the same weights, bit for bit)
    cuda_graphs: bool = False    # mezo on CUDA: steps replay one captured CUDA graph (engine/graphs.py; the same
                                 # weights, bit for bit); the first two steps, and the first of a new shape, run eagerly
    # Distributed runs (zo2bench/distributed, docs/distributed.md): ZO modes on torch.distributed, one rank a GPU.
    nproc_per_node: int = 1      # ranks on this host; above 1, `zo2bench run` launches them through torchrun
    dp: int = 0                  # data parallel: ranks that each take a shard of the global batch (0: default)
    pert: int = 0                # perturbation parallel: 1, or 2 (the + and - passes on two ranks); 0: default,
                                 # 2 where the world size is even
    weight_shard: int = 0        # ranks of a host that split each block and all-gather it: zo2 uploads each
                                 # rank's slice from one shared host copy, mezo keeps each GPU's slice resident;
                                 # 1: none; 0: default (zo2: every rank of the host; mezo: 1)
    dp_reduce: str = "rows"      # rows: every scored token's loss all-gathered (4 B a token a pass), summed as
                                 # one process sums them; scalars: the two mean losses all-reduced (2 scalars)

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise UserError(f"unknown mode '{mode}'; choose one of {', '.join(MODES)}")


def check_dtype(dtype: str, allow_auto: bool = False) -> None:
    if dtype not in DTYPES and not (allow_auto and dtype == "auto"):
        raise UserError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")


def check(cfg: RunConfig) -> None:
    """Every field that can be judged without the model or the machine; UserError says which and why."""
    check_mode(cfg.mode)
    check_dtype(cfg.dtype, allow_auto=True)
    for name in ("steps", "batch"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name} must be at least 1 (got {getattr(cfg, name)})")
    if cfg.warmup < 0 or cfg.prefetch < 0:
        raise UserError("--warmup and --prefetch must not be negative")
    if cfg.writeback_every < 1:
        raise UserError(f"--writeback-every must be at least 1 (got {cfg.writeback_every})")
    if cfg.seq < 2:
        raise UserError(f"--seq must be at least 2 (a next-token loss needs two tokens; got {cfg.seq})")
    if not (math.isfinite(cfg.lr) and cfg.lr >= 0):
        raise UserError(f"--lr must be a finite number >= 0 (got {cfg.lr})")
    if not math.isfinite(cfg.weight_decay) or cfg.weight_decay < 0:
        raise UserError(f"--weight-decay must be a finite number >= 0 (got {cfg.weight_decay})")
    if cfg.mode in ZO_MODES and not (math.isfinite(cfg.eps) and cfg.eps > 0):
        # g = (loss+ - loss-) / (2 eps): eps 0 divides by zero and turns every weight into NaN
        raise UserError(f"--eps must be a finite number > 0 (got {cfg.eps})")
    _check_distributed(cfg)
    if cfg.cuda_graphs and cfg.mode != "mezo":
        raise UserError(f"--cuda-graphs applies to mezo only (mode is {cfg.mode}): zo2's steps wait on the "
                        "copies of its own streams, and backprop's are not captured")
    if cfg.cuda_graphs and max(cfg.nproc_per_node, cfg.dp, cfg.pert, cfg.weight_shard) > 1:
        raise UserError("--cuda-graphs runs on one GPU; a distributed step's collectives are not captured")
    if cfg.gpu_budget_gib is not None:
        if cfg.mode != "zo2":
            raise UserError(f"--gpu-budget applies to zo2 only (mode is {cfg.mode})")
        if not (math.isfinite(cfg.gpu_budget_gib) and cfg.gpu_budget_gib > 0):
            raise UserError(f"--gpu-budget must be a positive number of GiB (got {cfg.gpu_budget_gib})")


def _check_distributed(cfg: RunConfig) -> None:
    """The distributed fields alone; against the world size and the GPUs: distributed/parallel.py."""
    if cfg.nproc_per_node < 1:
        raise UserError(f"--nproc-per-node must be at least 1 (got {cfg.nproc_per_node})")
    for name in ("dp", "pert", "weight_shard"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 (the default) or a number of ranks "
                            f"(got {getattr(cfg, name)})")
    if cfg.pert > 2:
        raise UserError(f"--pert {cfg.pert}: a MeZO step has two perturbed passes, so perturbation parallelism "
                        "spans 1 or 2 ranks; use --dp for more")
    if cfg.dp_reduce not in DP_REDUCES:
        raise UserError(f"unknown --dp-reduce '{cfg.dp_reduce}'; choose one of {', '.join(DP_REDUCES)}")
    parallel = cfg.nproc_per_node > 1 or max(cfg.dp, cfg.pert, cfg.weight_shard) > 1
    if parallel and cfg.mode not in ZO_MODES:
        raise UserError(f"distributed runs are for the ZO modes ({', '.join(ZO_MODES)}); "
                        f"{cfg.mode} runs on one device")
