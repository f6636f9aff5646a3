"""How fast can exactly-sized pinned host buffers be made? (device tool)  python3 tools/host_pin_bench.py

Registers 32 host buffers of one opt-6.7b block each (the size comes from the catalog), with and without
touching the pages first, on one thread and on eight, and prints GB/s (decimal GB).
"""
import time
from concurrent.futures import ThreadPoolExecutor

import torch

t = time.perf_counter()
from transformers import OPTForCausalLM  # noqa: E402, F401

print(f"import transformers + OPT class {time.perf_counter() - t:.2f} s")
from zo2bench import catalog  # noqa: E402
from zo2bench.engine.model import meta_model  # noqa: E402

for name in ("opt-6.7b", "opt-6.7b"):  # twice: the second shows the cost without first-use imports
    t = time.perf_counter()
    meta_model(catalog.get(name), torch.float16)
    print(f"meta {name} {time.perf_counter() - t:.2f} s")
torch.cuda.init()
N, K = catalog.get("opt-6.7b").block_params(), 32  # one opt-6.7b block in fp16 elements, 32 blocks
reg = torch.cuda.cudart().cudaHostRegister


def plain(n):
    x = torch.empty(n, dtype=torch.float16)
    reg(x.data_ptr(), x.numel() * 2, 0)
    return x


def touched(n):
    x = torch.empty(n, dtype=torch.float16)
    x.zero_()
    reg(x.data_ptr(), x.numel() * 2, 0)
    return x


for label, fn, threads in (("register", plain, 1), ("zero+register", touched, 1), ("register x8 threads", plain, 8),
                           ("zero+register x8 threads", touched, 8)):
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        bufs = list(ex.map(fn, [N] * K))
    dt = time.perf_counter() - t
    gb = K * N * 2 / 1e9
    print(f"{label:28s} {gb:.1f} GB in {dt:.2f} s = {gb / dt:.1f} GB/s; pinned={bufs[0].is_pinned()}")
    for b in bufs:
        torch.cuda.cudart().cudaHostUnregister(b.data_ptr())
    del bufs
