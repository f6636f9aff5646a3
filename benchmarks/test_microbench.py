"""Microbenchmarks of the engine's primitives (pytest-benchmark): one block upload, one offload, one
perturbation pass, one block's dual forward. A tiny block on the CPU in the test suite; an OPT-1.3B
block at T=2048 on a GPU when one is present. They print figures (pytest-benchmark's table) and assert
that the timed work was done: the bytes arrived, the perturbation changed the weights and repeats
itself from its seed, the two passes differ. Benchmarks, not unit tests: not in the default test run.

    pytest benchmarks/test_microbench.py --benchmark-only --benchmark-columns=median,iqr,rounds
"""
import dataclasses

import pytest
import torch

from zo2bench import catalog
from zo2bench.engine.model import build
from zo2bench.engine.noise import make_noise
from zo2bench.engine.offload import BlockOffloader, Resident

CUDA = torch.cuda.is_available()
MODEL, SEQ, DTYPE = ("opt-1.3b", 2048, torch.float16) if CUDA else ("opt-tiny", 64, torch.float32)
DEV = torch.device("cuda" if CUDA else "cpu")


def _sync():
    if CUDA:
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def zm():
    spec = catalog.get(MODEL)
    # Only two blocks are needed: keep host memory small on the GPU machine as well.
    return build(dataclasses.replace(spec, layers=2), DTYPE, DEV, seed=0)


def _pedantic(benchmark, fn):
    return benchmark.pedantic(lambda: (fn(), _sync()), rounds=10, warmup_rounds=2, iterations=1)


def test_block_upload(benchmark, zm):
    off = BlockOffloader(zm, prefetch=1).attach()
    block = zm.blocks[0]
    slot = off.slots[0][: block.numel]
    _pedantic(benchmark, lambda: slot.copy_(block.theta, non_blocking=True))
    assert torch.equal(slot.cpu(), block.theta.cpu())
    off.detach()


def test_block_offload(benchmark, zm):
    off = BlockOffloader(zm, prefetch=1).attach()
    block = zm.blocks[0]
    slot = off.slots[0][: block.numel]
    slot.copy_(block.theta)
    slot.mul_(-1)  # so that an offload that moved nothing would be seen
    want = slot.cpu()
    _pedantic(benchmark, lambda: block.theta.copy_(slot, non_blocking=True))
    assert torch.equal(block.theta.cpu(), want)
    block.theta.mul_(-1)  # the fixture's weights as they were
    off.detach()


def test_perturbation_pass(benchmark, zm):
    block = zm.blocks[0]
    noise = make_noise(DEV, DTYPE, block.numel)
    out = zm.arena_view(block)
    _pedantic(benchmark, lambda: noise.perturb(out, block.theta, seed=1, scale=1e-3))
    assert not torch.equal(out, block.theta)
    first = out.clone()
    noise.perturb(out, block.theta, seed=1, scale=1e-3)
    assert torch.equal(out, first), "z is regenerated from its seed, bit for bit"


def test_block_dual_forward(benchmark, zm):
    from zo2bench.engine.zo import MeZO

    block = zm.blocks[0]
    zo = MeZO(zm, Resident(zm), lr=0.0, eps=1e-3)
    batch = zm.make_batch(torch.randint(0, zm.spec.vocab, (1, SEQ)))
    x = torch.randn(1, SEQ, zm.spec.hidden, device=DEV, dtype=DTYPE)

    outs, seeds = {}, zo.unit_seeds(1)

    def dual():
        with torch.no_grad():
            for sign in (1.0, -1.0):
                zo._write(block, block.theta, seeds, sign=sign)
                outs[sign] = block.forward(x, batch)

    _pedantic(benchmark, dual)
    assert outs[1.0].shape == x.shape and bool(torch.isfinite(outs[1.0]).all())
    assert not torch.equal(outs[1.0], outs[-1.0]), "the two passes saw different weights"
