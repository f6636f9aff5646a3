"""mezo steps replayed from a captured graph (engine/graphs.py) leave the same weights and losses, bit for bit,
as eager steps. On the CPU a stand-in reruns the captured function at each replay, so everything the graph
reads anew (the static batch, the seed tables, the coefficient handed from one replay to the next) goes
through the real code; the GPU tier captures real CUDA graphs."""
import pytest
import torch

from zo2bench import catalog
from zo2bench.cli import main as cli
from zo2bench.config import RunConfig, check
from zo2bench.engine.graphs import GraphedMeZO
from zo2bench.engine.model import build, make_batch
from zo2bench.engine.offload import Resident
from zo2bench.engine.trainer import params_digest, run
from zo2bench.engine.zo import MeZO
from zo2bench.errors import UserError


class Rerun:
    """A graph that replays by running the captured function again (what a replay does, without CUDA)."""

    def capture(self, fn):
        self.fn = fn

    def replay(self):
        return self.fn()


def _trainers(model, device, dtype, wd, graph):
    spec, dev = catalog.get(model), torch.device(device)
    make = lambda: MeZO((zm := build(spec, dtype, dev, seed=3)), Resident(zm), lr=1e-2, eps=1e-2, weight_decay=wd,
                        seed=3)
    return spec, make(), GraphedMeZO(make(), graph=graph)


def _batches(spec, device, shapes):
    gen = torch.Generator().manual_seed(0)
    return [make_batch(torch.randint(0, spec.vocab, shape, generator=gen), torch.device(device)) for shape in shapes]


def _steps(opt, batches, lrs):
    rows = []
    for t, (batch, lr) in enumerate(zip(batches, lrs)):
        rows.append({k: v.item() for k, v in opt.step(batch, t, lr).items()})
    opt.flush()
    return rows, params_digest(opt.parameters())


def _compare(model, device, dtype, shapes, lrs, wd=0.1, graph=None):
    spec, eager, graphed = _trainers(model, device, dtype, wd, graph)
    batches = _batches(spec, device, shapes)
    a, b = _steps(eager, batches, lrs), _steps(graphed, batches, lrs)
    assert a == b
    assert len({r["loss_plus"] for r in a[0]}) > 1, "the weights moved between steps"
    return graphed.info


@pytest.mark.parametrize("model", ["opt-tiny", "opt-tiny-untied", "opt-tiny-350m", "llama-tiny", "qwen-tiny"])
def test_replayed_steps_match_eager_steps_bitwise(model):
    info = _compare(model, "cpu", torch.float32, [(2, 16)] * 6, [None] * 6, graph=Rerun)
    assert info["captures"] == 1 and info["eager_steps"] == 2 and info["replays"] == 4


def test_a_new_shape_or_lr_warms_up_and_captures_anew():
    shapes = [(2, 16)] * 4 + [(1, 24)] * 4 + [(1, 24)] * 3
    lrs = [None] * 8 + [2e-2] * 3  # the pending decay changes a step after lr does: a third signature
    info = _compare("opt-tiny", "cpu", torch.float32, shapes, lrs, graph=Rerun)
    # eager: step 0, the first of each signature (steps 1, 4, 8, 9); captured at 2, 5 and 10
    assert info == {**info, "captures": 3, "eager_steps": 5, "replays": 6}


class Refused:
    def capture(self, fn):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")


def test_a_step_that_cannot_be_captured_runs_eagerly_and_says_why():
    info = _compare("opt-tiny", "cpu", torch.float32, [(2, 16)] * 5, [None] * 5, graph=Refused)
    assert info == {"captures": 0, "replays": 0, "eager_steps": 5, "capture_s": 0.0,
                    "capture_error": "operation not permitted when stream is capturing"}


def test_cuda_graphs_are_refused_where_they_do_not_apply(capsys):
    for bad in (dict(mode="zo2"), dict(mode="fo-sgd"), dict(mode="mezo", nproc_per_node=2)):
        with pytest.raises(UserError, match="--cuda-graphs"):
            check(RunConfig(cuda_graphs=True, **bad))
    with pytest.raises(UserError, match="--cuda-graphs captures CUDA kernels; this run is on the CPU"):
        run(RunConfig(model="opt-tiny", mode="mezo", device="cpu", cuda_graphs=True, steps=1, seq=8))
    assert cli(["run", "--model", "opt-tiny", "--mode", "zo2", "--device", "cpu", "--cuda-graphs"]) == 2
    err = capsys.readouterr().err
    assert "--cuda-graphs applies to mezo only" in err and "Traceback" not in err


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["opt-125m", "opt-350m", "llama-tiny", "qwen-tiny"])  # opt-350m: Hugging Face's block
def test_gpu_cuda_graph_steps_match_eager_bitwise(model):
    kw = dict(model=model, mode="mezo", dtype="fp16", device="cuda", seq=256, steps=6, lr=1e-5, weight_decay=0.1)
    a, b = run(RunConfig(**kw)), run(RunConfig(**kw, cuda_graphs=True))
    pick = lambda rec: [(s["loss_plus"], s["loss_minus"], s["projected_grad"]) for s in rec["steps"]]
    assert pick(a) == pick(b) and a["final_params_sha256"] == b["final_params_sha256"]
    assert b["cuda_graphs"]["captures"] == 1 and b["cuda_graphs"]["replays"] == 4


@pytest.mark.gpu
def test_gpu_cuda_graphs_capture_anew_for_a_new_shape():
    shapes = [(1, 128)] * 4 + [(2, 64)] * 4
    info = _compare("opt-125m", "cuda", torch.float16, shapes, [None] * 8)
    assert info["captures"] == 2 and info["replays"] == 5  # steps 2, 3 and 5, 6, 7


def test_bench_step_table_says_what_graphs_did(tmp_path):
    """The table names replays, eager steps and captures, or why nothing was captured, and points at peak
    reserved memory (a replay's temporaries are not counted as allocated)."""
    import json

    from zo2bench.bench.step import bench_step, table

    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"kind": "calibration", "schema_version": 1,
                               "figures": {"cpu_matmul_fp32_tflop_per_s": {"median": 0.05}}}))
    rec = bench_step(RunConfig(model="opt-tiny", mode="mezo", device="cpu", seq=16, steps=2), str(cal), str(tmp_path))
    assert rec["cuda_graphs"] is None and "CUDA graphs" not in table(rec)
    rec["cuda_graphs"] = {"captures": 1, "replays": 9, "eager_steps": 2, "capture_s": 0.04}
    text = table(rec)
    assert "9 steps replayed, 2 eager; 1 capture(s), 0.04 s" in text and "in peak reserved" in text
    rec["cuda_graphs"] = {**rec["cuda_graphs"], "captures": 0, "replays": 0, "capture_error": "not permitted"}
    assert "not captured (not permitted): all 2 steps ran eagerly" in table(rec)


def test_run_summary_says_what_graphs_did():
    from zo2bench.commands.run import summary
    from zo2bench.measure import measured_run

    rec = measured_run(RunConfig(model="opt-tiny", mode="mezo", device="cpu", seq=16, steps=2))
    assert "CUDA graphs" not in summary(rec)
    rec["cuda_graphs"] = {"captures": 1, "replays": 3, "eager_steps": 2, "capture_s": 0.03}
    assert "CUDA graphs: 3 steps replayed, 2 eager" in summary(rec)
    rec["cuda_graphs"]["capture_error"] = "not permitted"
    assert "CUDA graphs: not captured (not permitted), every step eager" in summary(rec)
