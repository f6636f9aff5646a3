"""Distributed ZO on CPU ranks (gloo): N ranks give the one-process run's losses, projected gradients and
final weights; the degrees are checked, bad input is one line and exit status 2; the record is merged.

Two ranks are spawned once for the whole module and run every scenario in turn; the 2-D case (4 ranks)
goes through the command line, launcher included. The GPU tier (gpu2) repeats the comparison on NCCL.
"""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from zo2bench.cli import main as cli
from zo2bench.config import RunConfig
from zo2bench.distributed.parallel import ParallelDims
from zo2bench.distributed.shard import ShardLayout
from zo2bench.engine.trainer import run
from zo2bench.errors import UserError

BASE = dict(steps=3, batch=4, seq=16, dtype="fp32", device="cpu", lr=1e-2, seed=3)
DIST = ("nproc_per_node", "dp", "pert", "weight_shard", "dp_reduce")
SCENARIOS = {  # name -> the RunConfig fields of a 2-rank run
    "opt-dp2-rows": dict(model="opt-tiny", mode="zo2", dp=2, weight_shard=1),
    "opt-pert2-shard2": dict(model="opt-tiny", mode="zo2", pert=2, weight_shard=2, prefetch=2),
    "llama-dp2-shard2": dict(model="llama-tiny", mode="zo2", dp=2, weight_shard=2),
    "llama-mezo-dp2-resident-shards": dict(model="llama-tiny", mode="mezo", dp=2, weight_shard=2),
    "opt-dp2-scalars": dict(model="opt-tiny", mode="zo2", dp=2, weight_shard=1, dp_reduce="scalars"),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Every process of these tests on one thread, as the ranks are: on a loaded 2-core machine two
    threads made a tiny step 15x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def results(rec):
    return [(s["loss_plus"], s["loss_minus"], s["projected_grad"]) for s in rec["steps"]]


def one_process(fields: dict) -> dict:
    """The same run in this process, without the distributed fields."""
    return run(RunConfig(**(BASE | {k: v for k, v in fields.items() if k not in DIST})))


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _rank(rank: int, world: int, ports: list[int], out: str) -> None:
    """One spawned rank: every scenario in turn, each a process group of its own (its own port: a store
    on a port just given up is not always free again); rank 0 writes the merged records."""
    from zo2bench.distributed.measure import run_rank
    from zo2bench.distributed.parallel import World

    torch.set_num_threads(1)
    records = {}
    for (name, fields), port in zip(SCENARIOS.items(), ports):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        records[name] = run_rank(RunConfig(**(BASE | fields)), World(rank, world, rank, world))
    if rank == 0:
        with open(out, "w") as f:
            json.dump(records, f)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "records.json"
    torch.multiprocessing.start_processes(_rank, args=(2, _free_ports(len(SCENARIOS)), str(out)), nprocs=2,
                                          start_method="spawn")
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", [n for n in SCENARIOS if "scalars" not in n])
def test_two_ranks_match_one_process_bitwise(two_ranks, name):
    dist, ref = two_ranks[name], one_process(SCENARIOS[name])
    assert results(dist) == results(ref)
    assert dist["final_params_sha256"] == ref["final_params_sha256"]
    assert len({r[0] for r in results(ref)}) > 1, "the weights moved between steps"


def test_scalar_reduction_agrees_to_rounding_only(two_ranks):
    """Two all-reduced losses: the losses agree to fp32 rounding, g = (l+ - l-) / 2 eps does not (docs)."""
    dist, ref = two_ranks["opt-dp2-scalars"], one_process(SCENARIOS["opt-dp2-scalars"])
    first = zip(results(dist)[0][:2], results(ref)[0][:2])
    assert all(abs(a - b) <= 1e-6 * abs(b) for a, b in first)
    assert all(abs(a - b) <= 1e-3 * abs(b) for a, b in zip(results(dist)[-1], results(ref)[-1]))


def test_merged_record_names_the_strategy_and_every_rank(two_ranks):
    rec = two_ranks["llama-dp2-shard2"]
    d = rec["distributed"]
    assert (d["world_size"], d["dp"], d["pert"], d["weight_shard"], d["strategy"]) == (2, 2, 1, 2, "dp2+shard2")
    assert [r["rank"] for r in d["ranks"]] == [0, 1] and all(r["device"] == "cpu" for r in d["ranks"])
    assert rec["fingerprint"]["distributed"]["world_size"] == 2
    assert all(s["seconds"] == max(s["rank_seconds"]) and len(s["rank_seconds"]) == 2 for s in rec["steps"])
    assert rec["offload"]["shared_host_bytes"] > 0 and rec["config"]["nproc_per_node"] == 2
    resident = two_ranks["llama-mezo-dp2-resident-shards"]["offload"]
    assert resident["resident_blocks"] == 4 and resident["pinned_host_bytes"] == 0


def test_four_ranks_two_dimensions_through_the_command_line(tmp_path):
    """dp2 x pert2 with every block split four ways, launched by `zo2bench run --nproc-per-node 4`."""
    out = tmp_path / "r.json"
    fields = dict(model="opt-tiny", mode="zo2")
    args = [f"--{k}={v}" for k, v in (BASE | fields).items()]
    proc = subprocess.run([sys.executable, "-m", "zo2bench", "run", "--nproc-per-node=4", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec, ref = json.loads(out.read_text()), one_process(fields)
    assert rec["distributed"]["strategy"] == "dp2xpert2+shard4"
    assert results(rec) == results(ref) and rec["final_params_sha256"] == ref["final_params_sha256"]


# -- the degrees and bad input ---------------------------------------------------------------------
def dims(world=4, local=None, gpus=None, **kw):
    return ParallelDims.resolve(RunConfig(**(dict(mode="zo2", batch=8) | kw)), world, local or world, gpus)


def test_default_degrees_from_the_world_size():
    assert (dims(4).dp, dims(4).pert, dims(4).weight) == (2, 2, 4)
    assert (dims(3, batch=3).dp, dims(3, batch=3).pert) == (3, 1)
    assert (dims(2, batch=1).dp, dims(2, batch=1).pert) == (1, 2)   # batch 1: the two passes split, not the batch
    assert dims(4, mode="mezo").weight == 1 and dims(8, local=4).weight == 4
    assert (dims(4, dp=4).pert, dims(4, pert=1).dp) == (1, 4)
    assert dims(4).strategy == "dp2xpert2+shard4" and dims(1).strategy == "single"


@pytest.mark.parametrize("kw, says", [
    (dict(world=4, gpus=2), "4 ranks on this host but it has 2 CUDA GPU"),
    (dict(world=4, batch=3), "--batch 3 does not divide into 2"),
    (dict(world=4, dp=3), "--dp 3 does not divide the world of 4"),
    (dict(world=8, dp=2), "--pert is 1 or 2"),
    (dict(world=4, weight_shard=3), "--weight-shard 3 must divide the 4 ranks"),
    (dict(world=2, weight_shard=2, gpu_budget_gib=4.0), "choose one"),
    (dict(world=2, device="cuda:1"), "each rank of a distributed run takes the GPU"),
    (dict(world=2, weight_shard=2, writeback_every=4), "--writeback-every 4 is not built for sharded weights"),
])
def test_degrees_that_cannot_work_are_refused(kw, says):
    with pytest.raises(UserError, match=None) as e:
        dims(**kw)
    assert says in str(e.value)


@pytest.mark.parametrize("args, says", [
    (["--nproc-per-node=2", "--dp=2", "--batch=3"], "--batch 3 does not divide"),
    (["--nproc-per-node=2", "--pert=3"], "--pert 3"),
    (["--nproc-per-node=2", "--mode=fo-sgd"], "distributed runs are for the ZO modes"),
    (["--nproc-per-node=2", "--dp-reduce=mean"], "unknown --dp-reduce"),
    (["--nproc-per-node=2", "--device=cuda"], "no CUDA GPU"),
    (["--dp=2"], "needs a distributed launch"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, says):
    status = cli(["run", "--model=opt-tiny", "--device=cpu", "--seq=8", "--steps=1", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith("zo2bench: error: ") and says in err[-1], err
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("chunk_rows", [None, 24])  # one chunk; chunks that straddle the shards
def test_pooled_row_losses_reduce_to_the_one_process_loss_bitwise(monkeypatch, chunk_rows):
    from zo2bench.engine import loss
    from zo2bench.engine.model import make_batch

    V, B, T = 1024, 4, 33
    if chunk_rows:
        monkeypatch.setattr(loss, "LOGIT_CHUNK_BYTES", 10 * V * chunk_rows)
    gen = torch.Generator().manual_seed(0)
    h, w = torch.randn(B, T, 64, generator=gen), torch.randn(V, 64, generator=gen) * 0.1
    ids = torch.randint(0, V, (B, T), generator=gen)
    cpu = torch.device("cpu")
    with torch.no_grad():
        whole = loss.causal_lm_loss(h, w, make_batch(ids, cpu))
        shards = [loss.row_losses(h[i:i + 2], w, make_batch(ids[i:i + 2], cpu)) for i in (0, 2)]
        assert torch.equal(loss.reduce_rows(torch.cat(shards), w), whole)


def test_shard_layout_pads_to_whole_pages():
    lay = ShardLayout(numel=49984, ways=2, elem=4)
    assert lay.shard % 1024 == 0 and lay.stride >= lay.numel and lay.stride - lay.numel < 2 * 1024
    assert lay.own(1) == slice(lay.shard, 2 * lay.shard)


@pytest.mark.gpu2
@pytest.mark.parametrize("extra", [["--pert=2", "--weight-shard=1"], ["--pert=2", "--weight-shard=2"],
                                   ["--mode=mezo", "--dp=1", "--pert=2", "--weight-shard=2"], ["--dp=2"]])
def test_two_gpus_match_one_gpu(tmp_path, extra):
    """NCCL on two GPUs against one GPU, fp32. Splitting the passes or the weights moves no arithmetic:
    bitwise. Splitting the batch is bitwise only if cuBLAS's per-row results do not depend on the row count."""
    common = ["run", "--model=opt-tiny", "--mode=zo2", "--device=cuda", "--dtype=fp32", "--batch=4", "--seq=64",
              "--steps=3", "--lr=1e-2", "--seed=3"]
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert cli(common + [f"--out={one}"]) == 0
    assert cli(common + ["--nproc-per-node=2", *extra, f"--out={two}"]) == 0
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    if "--dp=2" in extra:
        assert all(abs(x - y) <= 1e-6 * abs(y) for x, y in zip(results(b)[0][:2], results(a)[0][:2]))
    else:
        assert results(a) == results(b) and a["final_params_sha256"] == b["final_params_sha256"]


def test_records_from_before_the_distributed_fields_compare_as_the_same_config():
    """The stored regression baselines predate nproc_per_node, dp, ...: a missing field reads as its default."""
    from zo2bench.regression.compare import _config_diff

    old = {k: v for k, v in RunConfig().as_dict().items() if k not in DIST}
    assert _config_diff([{"config": old}], [{"config": RunConfig().as_dict()}]) == []
    assert _config_diff([{"config": old}], [{"config": RunConfig(dp=2).as_dict()}]) == ["dp 0 -> 2"]
