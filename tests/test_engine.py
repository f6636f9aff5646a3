"""The trainer's promises on a tiny model through the real code path: parity, no drift, determinism,
MeZO's arithmetic against a plain Hugging Face forward, and offloading that detaches exactly."""
import pytest
import torch

from zo2bench import catalog
from zo2bench.config import RunConfig
from zo2bench.devices import torch_dtype
from zo2bench.engine.model import build, unit_seed
from zo2bench.engine.offload import BlockOffloader
from zo2bench.engine.trainer import params_digest, run
from zo2bench.engine.zo import MeZO, step_seed

TINY = ["opt-tiny", "opt-tiny-untied", "opt-tiny-350m", "llama-tiny", "qwen-tiny"]


def cfg(**kw):
    base = dict(model="opt-tiny", steps=3, batch=2, seq=16, dtype="fp32", device="cpu", lr=1e-2, seed=3)
    return RunConfig(**(base | kw))


def losses(rec):
    return [(s["loss_plus"], s["loss_minus"], s["projected_grad"]) for s in rec["steps"]]


@pytest.mark.parametrize("model", TINY)
def test_mezo_and_zo2_agree_bitwise(model):
    a, b = run(cfg(model=model, mode="mezo")), run(cfg(model=model, mode="zo2", prefetch=2))
    assert losses(a) == losses(b)
    assert a["final_params_sha256"] == b["final_params_sha256"]
    assert len({s[0] for s in losses(a)}) > 1, "the weights moved between steps"


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_parity_in_half_precision(dtype):
    a, b = run(cfg(mode="mezo", dtype=dtype)), run(cfg(mode="zo2", dtype=dtype))
    assert losses(a) == losses(b) and a["final_params_sha256"] == b["final_params_sha256"]


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("mode", ["mezo", "zo2"])
def test_lr_zero_leaves_weights_bitwise_unchanged(mode, dtype):
    spec = catalog.get("opt-tiny")
    before = params_digest(u.theta for u in build(spec, torch_dtype(dtype), torch.device("cpu"), seed=3).units)
    rec = run(cfg(mode=mode, dtype=dtype, lr=0.0, steps=6, eps=1e-2))
    assert rec["final_params_sha256"] == before
    assert any(s["projected_grad"] != 0 for s in rec["steps"]), "the perturbations did change the loss"


def test_same_seed_same_run_and_other_seed_differs():
    a, b, c = run(cfg(mode="zo2")), run(cfg(mode="zo2")), run(cfg(mode="zo2", seed=4))
    assert losses(a) == losses(b) and a["final_params_sha256"] == b["final_params_sha256"]
    assert losses(a) != losses(c)


def _z(zo, unit, seed):
    return torch.cat([z.clone() for _, _, z in zo.noise.chunks(unit.numel, unit_seed(seed, unit.index))])


@pytest.mark.parametrize("model", ["opt-tiny", "opt-tiny-350m", "llama-tiny", "qwen-tiny"])
def test_mezo_step_matches_plain_hugging_face_forward(model):
    """loss+ is the HF model's own loss at theta + eps z; the update is theta - lr g z."""
    import transformers

    spec, dev = catalog.get(model), torch.device("cpu")
    zm = build(spec, torch.float32, dev, seed=1)
    from zo2bench.engine.offload import Resident

    zo = MeZO(zm, Resident(zm), lr=1e-2, eps=1e-3, seed=5)
    ids = torch.randint(0, spec.vocab, (2, 12), generator=torch.Generator().manual_seed(0))
    theta0 = [u.theta.clone() for u in zm.units]
    seed = step_seed(5, 0)
    zs = [_z(zo, u, seed) for u in zm.units]

    hf = transformers.AutoModelForCausalLM.from_config(spec.hf_config(), attn_implementation="sdpa").eval()
    from zo2bench.engine.model import ADAPTERS, _unit_params

    embed, layers, head = ADAPTERS[spec.family].split(hf)
    groups = [embed] + [[layer] for layer in layers] + [head]

    def hf_loss(sign):
        seen = set()
        with torch.no_grad():
            for unit, modules, t0, z in zip(zm.units, groups, theta0, zs):
                params = (x for x in _unit_params(unit.name, modules) if id(x[3]) not in seen)
                for (_, _, _, p), seg in zip(params, unit.segments):
                    seen.add(id(p))
                    p.copy_((t0 + sign * 1e-3 * z)[seg.offset:seg.offset + seg.numel].view(seg.shape))
            return hf(input_ids=ids, labels=ids).loss.item()

    out = zo.step(zm.make_batch(ids), t=0)
    lp, lm, g = out["loss_plus"], out["loss_minus"], out["projected_grad"]
    assert lp.item() == pytest.approx(hf_loss(+1), rel=1e-5)
    assert lm.item() == pytest.approx(hf_loss(-1), rel=1e-5)
    assert g.item() == pytest.approx((lp.item() - lm.item()) / 2e-3, rel=1e-6)
    zo.flush()
    for u, t0, z in zip(zm.units, theta0, zs):
        torch.testing.assert_close(u.theta, t0 - 1e-2 * g * z, rtol=1e-6, atol=1e-7)


def test_weight_decay_spares_biases_and_norms():
    spec = catalog.get("opt-tiny")
    zm = build(spec, torch.float32, torch.device("cpu"), seed=0)
    from zo2bench.engine.offload import Resident

    zo = MeZO(zm, Resident(zm), lr=0.0, eps=1e-3, weight_decay=0.0)
    zo.lr, zo.wd = 0.5, 0.1  # g is multiplied by lr; set the update by hand to isolate decay
    before = [u.theta.clone() for u in zm.units]
    from zo2bench.engine.zo import Update

    zo.pending = Update(seeds=zo.unit_seeds(0), coef=torch.zeros(()), decay=0.5 * 0.1)
    zo.flush()
    for u, b in zip(zm.units, before):
        for seg in u.segments:
            now, was = (t[seg.offset:seg.offset + seg.numel] for t in (u.theta, b))
            if seg.decay:
                torch.testing.assert_close(now, was * 0.95)
            else:
                assert torch.equal(now, was), seg.name


def test_offloader_attaches_and_detaches_exactly():
    zm = build(catalog.get("llama-tiny"), torch.float32, torch.device("cpu"), seed=0)
    before = params_digest(u.theta for u in zm.units)
    originals = [u.theta for u in zm.units]
    off = BlockOffloader(zm, prefetch=1).attach()
    assert len(off.slots) == 2 and off.host_bytes() == sum(u.numel for u in zm.blocks) * 4
    off.detach()
    assert params_digest(u.theta for u in zm.units) == before
    assert all(u.theta.device.type == "cpu" and not u.theta.is_pinned() for u in zm.units)
    assert all(a is b for a, b in zip(originals, (u.theta for u in zm.units))), "host blocks are the same tensors"


def test_resident_blocks_keep_parity():
    """Blocks kept resident beside streamed ones (what --gpu-budget does on a GPU) change no bit."""
    from zo2bench.engine.offload import Resident

    spec = catalog.get("opt-tiny")
    ids = torch.randint(0, spec.vocab, (2, 16), generator=torch.Generator().manual_seed(0))
    out = []
    for weights in (Resident, lambda zm: BlockOffloader(zm, prefetch=1, resident_blocks=2).attach()):
        zm = build(spec, torch.float32, torch.device("cpu"), seed=0)
        zo = MeZO(zm, weights(zm), lr=1e-2, eps=1e-3, seed=1)
        out.append([zo.step(zm.make_batch(ids), t)["loss"].item() for t in range(3)])
        zo.flush()
        out[-1].append(params_digest(zo.parameters()))
        assert zo.offload_info()["resident_blocks"] in (2, len(zm.blocks))
    assert out[0] == out[1]


def test_gpu_budget_needs_a_gpu():
    from zo2bench.errors import UserError

    with pytest.raises(UserError, match="gpu-budget"):
        run(cfg(mode="zo2", gpu_budget_gib=1.0))


def test_pretrained_directory(tmp_path):
    """A local directory with a config and weights goes through from_pretrained."""
    import transformers

    spec = catalog.get("opt-tiny")
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(spec.hf_config()).eval()
    hf.save_pretrained(tmp_path)
    ids = torch.randint(0, spec.vocab, (1, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf(input_ids=ids, labels=ids).loss.item()
    rec = run(cfg(model=str(tmp_path), mode="zo2", eps=1e-9, steps=1, batch=1, seq=10, lr=0.0))
    assert rec["model"]["source"] == str(tmp_path) and rec["model"]["n_params"] == spec.n_params()
    zm = build(catalog.resolve(str(tmp_path)), torch.float32, torch.device("cpu"), seed=0)
    from zo2bench.engine.offload import Resident

    lp = MeZO(zm, Resident(zm), lr=0.0, eps=0.0).step(zm.make_batch(ids), 0)["loss_plus"]
    assert lp.item() == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("mode", ["fo-sgd", "fo-adamw"])
def test_first_order_baselines_fit_one_batch(mode):
    from zo2bench.engine.fo import FirstOrder

    spec, dev = catalog.get("opt-tiny"), torch.device("cpu")
    fo = FirstOrder(spec, mode, torch.float32, dev, lr=0.1 if mode == "fo-sgd" else 1e-2, weight_decay=0.0, seed=0)
    zm = build(spec, torch.float32, dev, seed=0)  # only for its batch maker
    batch = zm.make_batch(torch.randint(0, spec.vocab, (2, 16), generator=torch.Generator().manual_seed(0)))
    losses = [fo.step(batch)["loss"].item() for _ in range(10)]
    assert losses[-1] < losses[0] - 0.1
    assert run(cfg(mode=mode, steps=2))["steps"][1]["loss"] > 0


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["opt-125m", "opt-1.3b", "llama-tiny", "qwen-tiny"])
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_gpu_parity(model, dtype):
    kw = dict(model=model, dtype=dtype, device="cuda", seq=256, steps=3, lr=1e-5)
    a, b = run(cfg(mode="mezo", **kw)), run(cfg(mode="zo2", **kw))
    assert losses(a) == losses(b) and a["final_params_sha256"] == b["final_params_sha256"]


@pytest.mark.gpu
@pytest.mark.parametrize("extra", [{"prefetch": 2}, {"gpu_budget_gib": 0.25}], ids=["prefetch2", "budget"])
def test_gpu_parity_streaming_variants(extra):
    """Prefetching two blocks, and a budget that keeps some blocks resident, change no bit."""
    kw = dict(model="opt-125m", dtype="fp16", device="cuda", seq=256, steps=3, lr=1e-5)
    a, b = run(cfg(mode="mezo", **kw)), run(cfg(mode="zo2", **kw, **extra))
    assert losses(a) == losses(b) and a["final_params_sha256"] == b["final_params_sha256"]
    if "gpu_budget_gib" in extra:
        assert 0 < b["offload"]["resident_blocks"] < 12  # 0.25 GiB keeps 5 of opt-125m's 12 blocks


@pytest.mark.gpu
def test_gpu_attach_detach_placement_and_pinned_bytes():
    from zo2bench.engine import offload

    dev = torch.device("cuda")
    for host_blocks in (None, lambda n: offload.host_buffer(n, torch.float16, pin=True)):
        zm = build(catalog.get("opt-125m"), torch.float16, dev, seed=0, host_blocks=host_blocks)
        placed = [(u.theta.device.type, u.theta.is_pinned()) for u in zm.blocks]
        before, pinned0 = params_digest(u.theta for u in zm.units), offload.pinned_bytes()
        off = BlockOffloader(zm, prefetch=1, resident_blocks=2).attach()
        assert [u.theta.device.type for u in zm.blocks] == ["cuda"] * 2 + ["cpu"] * 10
        assert all(u.theta.is_pinned() for u in zm.blocks[2:])
        streamed_bytes = sum(u.numel for u in zm.blocks[2:]) * 2
        if host_blocks is None:
            assert offload.pinned_bytes() - pinned0 == streamed_bytes
        else:  # the two resident blocks' host buffers were let go
            assert pinned0 - offload.pinned_bytes() == sum(u.numel for u in zm.blocks[:2]) * 2
        off.detach()
        assert [(u.theta.device.type, u.theta.is_pinned()) for u in zm.blocks] == placed
        assert offload.pinned_bytes() == pinned0
        assert params_digest(u.theta for u in zm.units) == before
        off.close() if host_blocks is None else [offload.release_host_buffer(u.theta) for u in zm.blocks]


@pytest.mark.gpu2
def test_second_gpu_runs_and_is_recorded():
    """--device cuda:1 runs there (not on the current device) and the record names that GPU."""
    from zo2bench.measure import measured_run

    rec = measured_run(cfg(model="opt-125m", mode="zo2", dtype="fp16", device="cuda:1", seq=128, steps=2))
    assert rec["config"]["device"] == "cuda:1"
    props = torch.cuda.get_device_properties(1)
    assert rec["fingerprint"]["gpu_uuid"].lower().endswith(str(props.uuid).lower())
    assert rec["fingerprint"]["gpu_bus_id"] and rec["memory"]["measured"]["torch_peak_allocated_bytes"] > 0
    assert torch.cuda.max_memory_allocated(1) > 0
    ref = measured_run(cfg(model="opt-125m", mode="zo2", dtype="fp16", device="cuda:0", seq=128, steps=2))
    assert ref["final_params_sha256"] == rec["final_params_sha256"]
    assert ref["fingerprint"]["gpu_uuid"] != rec["fingerprint"]["gpu_uuid"]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_gpu_lr_zero_no_drift(dtype):
    spec = catalog.get("opt-125m")
    before = params_digest(u.theta for u in build(spec, torch_dtype(dtype), torch.device("cuda"), seed=3).units)
    rec = run(cfg(model="opt-125m", mode="zo2", dtype=dtype, device="cuda", lr=0.0, steps=4, seq=128))
    assert rec["final_params_sha256"] == before


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_triton_noise_is_one_z_for_perturb_and_update(dtype):
    from zo2bench.engine.noise import TritonNoise

    noise = TritonNoise(torch.device("cuda"), dtype, 10**7)
    theta = torch.randn(3_000_001, device="cuda").to(dtype)
    out = torch.empty_like(theta)
    noise.perturb(out, theta, seed=123, scale=1.0)
    upd = theta.clone()
    noise.update(upd, seed=123, coef=torch.ones((), device="cuda"))
    assert torch.equal(out, upd)  # the update regenerates exactly the z of the perturbation
    z = (out.float() - theta.float())
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.02
    again = torch.empty_like(theta)
    noise.perturb(again, theta, seed=124, scale=1.0)
    assert not torch.equal(again, out)


@pytest.mark.gpu
def test_triton_noise_is_randn4x_up_to_its_approximate_functions():
    """TritonNoise's z is tl.randn4x's z from the same Philox counters, to 1e-4 (the approximate lg2/sin/cos),
    element for element through the engine's layout, the ragged tail included."""
    import triton
    import triton.language as tl

    from zo2bench.engine.noise import TritonNoise

    @triton.jit
    def exact(out_ptr, n, seed, Q: tl.constexpr):
        pid = tl.program_id(0)
        z0, z1, z2, z3 = tl.randn4x(seed, pid * Q + tl.arange(0, Q))
        base = pid.to(tl.int64) * 4 * Q + tl.arange(0, Q)
        tl.store(out_ptr + base, z0, mask=base < n)
        tl.store(out_ptr + base + Q, z1, mask=base + Q < n)
        tl.store(out_ptr + base + 2 * Q, z2, mask=base + 2 * Q < n)
        tl.store(out_ptr + base + 3 * Q, z3, mask=base + 3 * Q < n)

    n, seed = 3_000_001, 77
    noise = TritonNoise(torch.device("cuda"), torch.float32, n)
    zero = torch.zeros(n, device="cuda")
    z = torch.empty_like(zero)
    noise.perturb(z, zero, seed=seed, scale=1.0)
    want = torch.empty_like(zero)
    exact[(triton.cdiv(n, 4 * noise.Q),)](want, n, seed, Q=noise.Q)
    assert (z - want).abs().max().item() < 1e-4
    assert not torch.equal(z, want)  # the functions are the approximate ones


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_loss_matches_cross_entropy(dtype, monkeypatch):
    """The ZO passes' fused log-sum-exp path gives F.cross_entropy's loss, over chunk edges and a target subset."""
    from zo2bench.engine import loss as L
    from zo2bench.engine.model import make_batch

    g = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(3, 301, 64, device="cuda", generator=g).to(dtype)
    weight = (torch.randn(5003, 64, device="cuda", generator=g) * 0.3).to(dtype)
    ids = torch.randint(0, 5003, (3, 301), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :150] = -100
    monkeypatch.setattr(L, "FUSED_CHUNK_BYTES", 200 * 5003 * 2)  # 128-row chunks: several, one ragged
    monkeypatch.setattr(L, "FUSED_MIN_ROWS", 128)
    for lab in (None, labels):
        batch = make_batch(ids, torch.device("cuda"), lab)
        rows = hidden[:, :-1].reshape(-1, 64)
        if batch.target_pos is not None:
            rows = rows[batch.target_pos]
        want = torch.nn.functional.cross_entropy((rows @ weight.t()).float(), batch.target_ids)
        with torch.no_grad():
            got = L.causal_lm_loss(hidden, weight, batch)
        assert L.fused_available(hidden)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_out_of_memory_becomes_a_typed_error(monkeypatch):
    """A sweep records GPUOutOfMemory's configuration and memory and goes on (no GPU needed to check the path)."""
    from types import SimpleNamespace

    from zo2bench.engine import trainer
    from zo2bench.errors import GPUOutOfMemory

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "_run", boom)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: 70 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d: 75 * 2**30)
    with pytest.raises(GPUOutOfMemory) as e:
        trainer.run(cfg(mode="zo2"))
    assert e.value.config["model"] == "opt-tiny" and e.value.allocated_bytes == 70 * 2**30
    assert e.value.as_dict()["total_bytes"] == 80 * 2**30 and "Tried to allocate" in e.value.detail
    assert "70.00 GiB allocated" in str(e.value)


@pytest.mark.parametrize("model", TINY)
def test_first_order_trains_the_catalog_model(model):
    """Backprop baselines train exactly the catalog's parameters: a tied head stays tied (to_empty once untied it,
    and fo-* measured an extra vocab x hidden matrix with its gradients and Adam moments)."""
    from zo2bench.engine.fo import FirstOrder

    spec = catalog.get(model)
    fo = FirstOrder(spec, "fo-adamw", torch.float32, torch.device("cpu"), lr=1e-3, weight_decay=0.0, seed=0)
    assert sum(p.numel() for p in fo.parameters()) == spec.n_params()
    head, embed = fo.model.get_output_embeddings().weight, fo.model.get_input_embeddings().weight
    assert (head.data_ptr() == embed.data_ptr()) == spec.tied
