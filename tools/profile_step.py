"""Where does a step's time go? torch.profiler over a few steps (device tool).

    PYTHONPATH=. python3 tools/profile_step.py --model opt-1.3b-untied --mode mezo --batch 1 --seq 2048
    PYTHONPATH=. python3 tools/profile_step.py --mode zo2 --writeback-every 4   # deferred write-back's replays

The table is torch.profiler's, sorted by CUDA time over the 3 measured steps (divide by 3 for a step).
"""
import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from zo2bench.config import RunConfig
from zo2bench.engine import trainer

p = argparse.ArgumentParser()
p.add_argument("--model", default="opt-1.3b-untied")
p.add_argument("--mode", default="mezo")
p.add_argument("--batch", type=int, default=1)
p.add_argument("--seq", type=int, default=2048)
p.add_argument("--rows", type=int, default=22)
p.add_argument("--writeback-every", type=int, default=1, help="zo2: deferred write-back's K")
p.add_argument("--sdpa", default="default", choices=["default", "cudnn", "flash"],
               help="SDPA backend to put first (compare attention kernels)")
a = p.parse_args()

prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
started = []


def on_phase(name):
    if name == "measured":
        prof.__enter__()
        started.append(1)


cfg = RunConfig(model=a.model, mode=a.mode, batch=a.batch, seq=a.seq, dtype="fp16", device="cuda", warmup=3, steps=3,
                writeback_every=a.writeback_every)
if a.sdpa == "default":
    rec = trainer.run(cfg, on_phase=on_phase)
else:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    first = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[a.sdpa]
    rest = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)
    order = [first] + [b for b in rest if b != first]
    with sdpa_kernel(order, set_priority=True):
        rec = trainer.run(cfg, on_phase=on_phase)
torch.cuda.synchronize()
prof.__exit__(None, None, None)
print(f"== {a.model} {a.mode} b{a.batch} T{a.seq} K{a.writeback_every} sdpa={a.sdpa}: steps ms",
      [round(s["seconds"] * 1e3, 1) for s in rec["steps"]])
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=a.rows, max_name_column_width=60))
