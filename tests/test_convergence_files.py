"""Real data named in the experiment file: [convergence.files.TASK] with files the test writes (SST-2 JSON lines,
SQuAD's own JSON) and a local model directory; a sweep runs it with no pretraining and records the files."""
import io
import json

import pytest
from test_convergence import MICRO_DATA, MICRO_PRE

from zo2bench import catalog, results
from zo2bench.convergence import files
from zo2bench.convergence.pretrain import pretrained
from zo2bench.errors import UserError
from zo2bench.experiments import runner, spec
from zo2bench.tasks.synthetic import build


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A local model directory (config.json, weights, tokenizer.json): a micro ladder model."""
    cache = tmp_path_factory.mktemp("cache")
    data = build(MICRO_DATA, cache)
    return data, pretrained("ladder-64x2", MICRO_PRE, data, "cpu", root=cache).path


def _sst2(path, examples):
    """The synthetic reviews in the layout datasets' Dataset.to_json writes for glue/sst2."""
    path.write_text("".join(json.dumps({"sentence": e.prompt.removesuffix(" answer :"), "label": e.label, "idx": i})
                            + "\n" for i, e in enumerate(examples)))


def experiment(model, files_table: str, models=None) -> str:
    return f'''kind = "convergence"
[base]
device = "cpu"
[steps]
measured = 3
repeats = 1
[grid]
models = {json.dumps(models or [str(model)])}
modes = ["zo2", "fo-adamw"]
dtypes = ["fp32"]
batches = [4]
seqs = [96]
[convergence]
eval_every = 3
dev_examples = 8
test_examples = 8
shots = [4]
[convergence.modes.zo2]
lrs = [1e-4]
[convergence.modes.fo-adamw]
lrs = [1e-3]
{files_table}'''


SST2_TABLE = '''[convergence.files.classification]
format = "sst2"
train = "sst2/train.jsonl"
dev = "sst2/dev.jsonl"
test = "sst2/test.jsonl"
prompt = "{sentence} answer :"
label_words = [" bad", " good"]
'''


def test_a_sweep_on_files_named_in_the_experiment_file(tmp_path, model_dir, monkeypatch):
    data, model = model_dir
    monkeypatch.setenv("ZO2BENCH_CACHE", str(tmp_path / "empty-cache"))  # nothing may be pretrained
    (tmp_path / "sst2").mkdir()
    for split in ("train", "dev", "test"):
        _sst2(tmp_path / "sst2" / f"{split}.jsonl", data.split("classification", split))
    (tmp_path / "real.toml").write_text(experiment(model, SST2_TABLE))
    exp = spec.load(tmp_path / "real.toml")
    stream = io.StringIO()
    summary = runner.sweep(exp, results_dir=tmp_path / "results", stream=stream)
    assert summary["counts"] == {"ok": 2}, stream.getvalue()[-3000:]
    rows = [r for f in results.sweep_files(tmp_path / "results", "real") for r in results.read_rows(f)]
    for r in rows:
        assert r["pretrained"] is None and r["data"]["train_examples"] == 8
        assert r["data"]["files"]["dev"] == str(tmp_path / "sst2" / "dev.jsonl")
        assert len(r["data"]["files_sha256"]["train"]) == 64 and r["data"]["template"]["format"] == "sst2"
        assert r["finetune"]["dev_examples"] == 8 and r["finetune"]["test"]["accuracy"] is not None
        assert r["n_params"] == catalog.resolve(str(model)).n_params()
    assert not (tmp_path / "empty-cache" / "pretrained").exists()


def test_squad_files_and_their_template(tmp_path):
    squad = {"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "the bako is great .", "qas": [
        {"id": "q1", "question": "what is the bako ?", "answers": [{"text": "great", "answer_start": 12}]}]}]}]}
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.json").write_text(json.dumps(squad))
    table = {"format": "squad", "train": "train.json", "dev": "dev.json", "test": "test.json",
             "prompt": "{context} question : {question} answer :"}
    s = files.check(table, str(tmp_path / "x.toml"), "qa")
    ex = files.splits(s, "qa")["dev"][0]
    assert ex.prompt == "the bako is great . question : what is the bako ? answer :" and ex.answers == ("great",)
    assert ex.target == " great"


@pytest.mark.parametrize("table, models, match", [
    (SST2_TABLE.replace("sst2/dev.jsonl", "sst2/nope.jsonl"), None, r"convergence.files.classification.dev: no such"),
    (SST2_TABLE + 'colour = "red"\n', None, r"classification.colour: unknown key"),
    (SST2_TABLE.replace('format = "sst2"', 'format = "squad"'), None, "is a qa layout, not classification"),
    (SST2_TABLE.replace('format = "sst2"', "").replace('label_words = [" bad", " good"]', ""), None,
     "needs label_words"),
    (SST2_TABLE.replace("[convergence.files.classification]", "[convergence.files.qa]"), None,
     "convergence.files.qa: .*a task of convergence.tasks"),
    (SST2_TABLE, ["ladder-64x2"], "local model directories holding config.json and tokenizer.json"),
])
def test_bad_file_tables_are_refused_with_the_key_named(tmp_path, model_dir, table, models, match):
    data, model = model_dir
    (tmp_path / "sst2").mkdir()
    for split in ("train", "dev", "test"):
        _sst2(tmp_path / "sst2" / f"{split}.jsonl", data.split("classification", split)[:4])
    (tmp_path / "bad.toml").write_text(experiment(model, table, models))
    with pytest.raises(UserError, match=match):
        spec.load(tmp_path / "bad.toml")
