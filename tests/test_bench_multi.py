"""bench-step --batches/--seqs: several configurations measured on one built model (bench/multi.py,
measure.BuildOnce), one record each, against separate bench-step runs of the same configurations."""
from __future__ import annotations

import json

import pytest

from zo2bench import catalog
from zo2bench.bench.multi import configurations, measure_all, out_paths, parse_sizes
from zo2bench.cli import main as cli
from zo2bench.config import RunConfig
from zo2bench.errors import UserError
from zo2bench.measure import BuildOnce

TINY = ["--model", "opt-tiny", "--device", "cpu", "--dtype", "fp32", "--seq", "16", "--steps", "2", "--warmup", "1"]
SAME = ("config", "model", "fingerprint", "resident_blocks", "streamed_blocks")


def _bench(tmp_path, name, *extra):
    out = tmp_path / name
    assert cli(["bench-step", *TINY, "--results-dir", str(tmp_path / "res"), "--out", str(out), *extra]) == 0
    return out


def _losses(b):
    return [(s["loss_plus"], s["loss_minus"], s["projected_grad"]) for s in b["steps"]]


@pytest.fixture(scope="module")
def separate_and_shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multi")
    sep = {b: json.loads(_bench(tmp, f"sep{b}.json", "--batch", str(b)).read_text()) for b in (1, 4)}
    _bench(tmp, "b.json", "--batches", "1,4")
    shared = [json.loads((tmp / f"b.batch{b}-seq16.json").read_text()) for b in (1, 4)]
    return sep, shared


def test_two_batches_on_one_build_write_two_records_shaped_as_separate_runs(separate_and_shared):
    sep, shared = separate_and_shared
    for b, rec in zip((1, 4), shared):
        assert {k: rec[k] for k in SAME if k != "fingerprint"} == {k: sep[b][k] for k in SAME if k != "fingerprint"}
        assert rec["kind"] == "bench-step" and rec["config"]["batch"] == b
        assert rec["step_s"]["n"] == 2 and [s["warmup"] for s in rec["steps"]] == [True, False, False]
        assert set(rec) - {"shared_build"} == set(sep[b]) and rec["floors"]["flops"] == sep[b]["floors"]["flops"]
        assert rec["memory"].keys() == sep[b]["memory"].keys()   # this configuration's own peaks


def test_the_first_configuration_is_a_separate_run_and_the_next_continues_its_weights(separate_and_shared):
    sep, (first, second) = separate_and_shared
    assert _losses(first) == _losses(sep[1]) and first["final_params_sha256"] == sep[1]["final_params_sha256"]
    # the second starts from the first's final weights, so its numbers are not a separate batch-4 run's
    assert second["shared_build"]["start_params_sha256"] == first["final_params_sha256"]
    assert second["final_params_sha256"] != sep[4]["final_params_sha256"] and _losses(second) != _losses(sep[4])
    assert "continued" in second["shared_build"]["weights"]


def test_the_continued_weights_are_what_the_engine_gives_stepping_on_from_the_first_batch(separate_and_shared):
    """What the record says, rebuilt with the engine's own pieces: one trainer, batch 1's steps from t=0,
    flush, then batch 4's steps from t=0 again, flush: the digest of the second record."""
    import torch

    from zo2bench.engine.model import make_batch
    from zo2bench.engine.trainer import build_trainer, params_digest, random_batches

    _, (_, second) = separate_and_shared
    cfg = RunConfig.from_dict(second["config"])
    spec, dev = catalog.resolve(cfg.model), torch.device("cpu")
    torch.manual_seed(cfg.seed)
    trainer = build_trainer(cfg, spec, dev)
    for batch in (1, 4):
        c = cfg.replace(batch=batch)
        for t, data in enumerate(random_batches(spec.vocab, c, c.warmup + c.steps, lambda ids: make_batch(ids, dev))):
            trainer.step(data, t)
        trainer.flush()
    assert params_digest(trainer.parameters()) == second["final_params_sha256"]
    trainer.close()


def test_the_build_is_recorded_once_and_named_shared(separate_and_shared):
    _, (first, second) = separate_and_shared
    assert first["build_s"] > 0 and second["build_s"] is None
    for i, rec in enumerate((first, second)):
        sb = rec["shared_build"]
        assert sb["build_s"] == first["build_s"] and sb["index"] == i
        assert sb["configurations"] == [{"batch": 1, "seq": 16}, {"batch": 4, "seq": 16}]
        assert sb["files"] == ["b.batch1-seq16.json", "b.batch4-seq16.json"]


def test_sizes_configurations_and_file_names():
    assert parse_sizes("1,8", "--batches") == (1, 8) and parse_sizes(None, "--seqs") is None
    for bad in ("", "0,8", "1,x", "4,4"):
        with pytest.raises(UserError, match="--batches"):
            parse_sizes(bad, "--batches")
    cfgs = configurations(RunConfig(batch=2, seq=64), (1, 8), (128, 256))
    assert [(c.batch, c.seq) for c in cfgs] == [(1, 128), (8, 128), (1, 256), (8, 256)]
    assert configurations(RunConfig(batch=2, seq=64), None, None) == [RunConfig(batch=2, seq=64)]
    assert out_paths("r/b.json", cfgs[:2]) == ["r/b.batch1-seq128.json", "r/b.batch8-seq128.json"]
    assert out_paths("-", cfgs[:2]) == ["-", "-"] and out_paths("r/b.json", cfgs[:1]) == ["r/b.json"]


def test_bad_sizes_are_one_line_and_exit_2(tmp_path, capsys):
    assert cli(["bench-step", *TINY, "--batches", "1,0", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zo2bench: error: --batches") and "Traceback" not in err
    assert cli(["bench-step", *TINY, "--seqs", "16,99999", "--results-dir", str(tmp_path)]) == 2
    assert "positions" in capsys.readouterr().err   # refused before the build, not after the first batch


class _Timeline:
    def __init__(self):
        self.names = []

    def span(self, lane, name):
        self.names.append(name)


def test_build_once_builds_once_keeps_the_trainer_and_moves_spans_to_each_run_timeline():
    built, closed = [], []

    class Trainer:
        def __init__(self, timeline):
            self.timeline = timeline

        def close(self):
            closed.append(self)

    def builder(cfg, spec, dev, timeline=None):
        built.append(cfg)
        return Trainer(timeline)

    once, a, b = BuildOnce(builder), _Timeline(), _Timeline()
    t1 = once(RunConfig(batch=1), None, None, a)
    t1.timeline.span(None, "upload")
    t1.close()                                     # run()'s close at its end: kept for the next run
    t2 = once(RunConfig(batch=8, seq=256), None, None, b)
    t2.timeline.span(None, "compute")
    assert len(built) == 1 and not closed and a.names == ["upload"] and b.names == ["compute"]
    with pytest.raises(UserError, match="not in lr"):
        once(RunConfig(batch=8, lr=1.0), None, None, b)
    once.close()
    assert len(closed) == 1


def test_a_failing_configuration_keeps_the_records_before_it():
    def measure(cfg, once):
        if cfg.batch == 8:
            raise UserError("out of GPU memory")
        return {"config": cfg.as_dict()}

    cfgs = configurations(RunConfig(), (1, 8, 16), None)
    records, error = measure_all(cfgs, measure)
    assert len(records) == 1 and "configuration 2 of 3 (batch 8" in str(error) and "the 1 before it" in str(error)
    with pytest.raises(UserError):
        measure_all(cfgs[1:], measure)              # nothing measured: the error itself
    with pytest.raises(UserError):
        measure_all(cfgs, measure, keep_partial=False)


def test_two_gloo_ranks_measure_two_batches_on_one_build(tmp_path, separate_and_shared):
    sep, _ = separate_and_shared
    _bench(tmp_path, "d.json", "--batches", "1,4", "--nproc-per-node", "2")
    first, second = (json.loads((tmp_path / f"d.batch{b}-seq16.json").read_text()) for b in (1, 4))
    assert first["distributed"]["strategy"] == "pert2+shard2" and second["config"]["batch"] == 4
    assert first["final_params_sha256"] == sep[1]["final_params_sha256"]    # pert2+shard2 is bitwise
    assert second["shared_build"]["start_params_sha256"] == first["final_params_sha256"]
    assert second["build_s"] is None and all(s["seconds"] == max(s["rank_seconds"]) for s in second["steps"])
