"""Deferred write-back (BlockOffloader(writeback_every=K)): a streamed block's host copy is written back every
K-th visit and its updates replayed on upload in between, and every bit of the run stays what K = 1 gives.
On the CPU the host copy and the device slot are separate tensors, so the replay arithmetic runs here as on
a GPU; the GPU tier repeats the comparison with streams and the Triton kernels."""
import pytest
import torch

from zo2bench import catalog
from zo2bench.config import RunConfig
from zo2bench.engine.model import build
from zo2bench.engine.offload import BlockOffloader, Resident
from zo2bench.engine.trainer import params_digest, run
from zo2bench.engine.zo import MeZO
from zo2bench.errors import UserError


def cfg(**kw):
    base = dict(model="opt-tiny", mode="zo2", steps=9, batch=2, seq=16, dtype="fp32", device="cpu", lr=1e-2,
                seed=3)
    return RunConfig(**(base | kw))


def trace(rec):
    return [(s["loss_plus"], s["loss_minus"], s["projected_grad"]) for s in rec["steps"]]


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_k4_is_bitwise_k1_over_steps_not_a_multiple_of_k(dtype):
    """9 steps with K = 4: the last write-backs come from flush(), with 1 to 3 updates replayed."""
    a, b = run(cfg(dtype=dtype)), run(cfg(dtype=dtype, writeback_every=4))
    assert trace(a) == trace(b) and a["final_params_sha256"] == b["final_params_sha256"]
    assert len({t[0] for t in trace(a)}) > 1, "the weights moved between steps"
    assert b["config"]["writeback_every"] == 4 and a["config"]["writeback_every"] == 1


@pytest.mark.parametrize("model", ["opt-tiny", "llama-tiny", "qwen-tiny"])
def test_k4_zo2_matches_mezo(model):
    kw = dict(model=model, weight_decay=0.1, prefetch=2, steps=6)  # decay: the replay applies it too
    a, b = run(cfg(mode="mezo", **kw)), run(cfg(writeback_every=4, **kw))
    assert trace(a) == trace(b) and a["final_params_sha256"] == b["final_params_sha256"]


def _stepped(every: int, steps: int, flush: bool):
    spec = catalog.get("opt-tiny")
    zm = build(spec, torch.float32, torch.device("cpu"), seed=0)
    off = BlockOffloader(zm, prefetch=1, writeback_every=every).attach()
    zo = MeZO(zm, off, lr=1e-2, eps=1e-3, seed=1)
    gen = torch.Generator().manual_seed(0)
    for t in range(steps):
        zo.step(zm.make_batch(torch.randint(0, spec.vocab, (2, 16), generator=gen)), t)
    if flush:
        zo.flush()
    return zm, off, zo


def test_host_copies_lag_between_write_backs_and_catch_up_at_flush():
    """Between write-backs the host copies really are older (the deferral happens), staggered so that
    each step writes back about 1/K of the blocks; after flush they equal K = 1's."""
    zm1, _, _ = _stepped(1, 3, flush=False)
    zm4, off4, zo4 = _stepped(4, 3, flush=False)
    hosts1 = [u.theta.clone() for u in zm1.blocks]
    lag = [len(off4.stale[u.index]) for u in zm4.blocks]
    # 3 steps make 2 updates (the last one is pending); 4 blocks with phases 0..3 have written back at
    # different visits, so they lack different numbers of updates
    assert sorted(lag) == [0, 1, 2, 2] and len(set(lag)) > 1
    for u, h1 in zip(zm4.blocks, hosts1):
        assert torch.equal(u.theta, h1) == (len(off4.stale[u.index]) == 0)
    zo4.flush()
    zm1b, _, _ = _stepped(1, 3, flush=True)
    assert params_digest(u.theta for u in zm4.units) == params_digest(u.theta for u in zm1b.units)
    assert all(not s for s in off4.stale.values())


@pytest.mark.parametrize("end", ["close", "detach"])
def test_close_and_detach_write_deferred_updates_back(end):
    """Without a flush, the host copies after close()/detach() hold every applied update, as with K = 1."""
    zm1, off1, _ = _stepped(1, 6, flush=False)
    zm4, off4, _ = _stepped(4, 6, flush=False)
    assert any(off4.stale.values())
    getattr(off4, end)()
    getattr(off1, end)()
    assert params_digest(u.theta for u in zm4.units) == params_digest(u.theta for u in zm1.units)


def test_resident_ignores_redo_and_bad_k_is_refused():
    zm = build(catalog.get("opt-tiny"), torch.float32, torch.device("cpu"), seed=0)
    Resident(zm).written(zm.units[1], redo=lambda theta: theta.zero_())  # kept nowhere, applied never
    assert zm.units[1].theta.abs().sum() > 0
    with pytest.raises(ValueError, match="writeback_every"):
        BlockOffloader(zm, writeback_every=0)
    with pytest.raises(UserError, match="--writeback-every"):
        run(cfg(writeback_every=0))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_gpu_k4_is_bitwise_k1_and_mezo(dtype):
    kw = dict(model="opt-125m", dtype=dtype, device="cuda", seq=256, steps=9, lr=1e-5)
    a, b, c = run(cfg(mode="mezo", **kw)), run(cfg(**kw)), run(cfg(writeback_every=4, prefetch=2, **kw))
    assert trace(a) == trace(b) == trace(c)
    assert a["final_params_sha256"] == b["final_params_sha256"] == c["final_params_sha256"]


@pytest.mark.gpu
def test_gpu_k3_lr_zero_no_drift():
    from zo2bench.devices import torch_dtype

    spec = catalog.get("opt-125m")
    before = params_digest(u.theta for u in build(spec, torch_dtype("fp16"), torch.device("cuda"), seed=3).units)
    rec = run(cfg(model="opt-125m", dtype="fp16", device="cuda", lr=0.0, steps=5, seq=128, writeback_every=3))
    assert rec["final_params_sha256"] == before


@pytest.mark.parametrize("model", ["llama-tiny", "qwen-tiny"])
def test_bench_step_on_llama_shapes_records_k_and_both_floors(model, tmp_path):
    """Llama-style blocks (RMSNorm, SwiGLU, grouped-query attention, rotary) through bench-step's real path:
    the record carries K, the old and the deferred floors, and zo2 with K = 2 ends where mezo does."""
    import json

    from zo2bench.bench.step import bench_step, table

    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"kind": "calibration", "schema_version": 1,
                               "figures": {"cpu_matmul_fp32_tflop_per_s": {"median": 0.05}}}))
    base = RunConfig(model=model, device="cpu", seq=16, batch=2, steps=2, warmup=1, lr=1e-2)
    z, m = (bench_step(base.replace(mode=mode, writeback_every=2), str(cal), str(tmp_path)) for mode in ("zo2", "mezo"))
    assert z["config"]["writeback_every"] == 2 and z["floors"]["writeback_every"] == 2
    assert z["streamed_blocks"] == catalog.get(model).layers and z["floors"]["transfer_deferred_s"] == 0.0
    assert z["floors"]["floor_deferred_s"] == z["floors"]["compute_s"] > 0
    assert [s["loss"] for s in z["steps"]] == [s["loss"] for s in m["steps"]]
    assert z["writeback"] is None and "step / floor" in table(z)  # K's suggestion needs a GPU's link
