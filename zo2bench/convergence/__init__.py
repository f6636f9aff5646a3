"""The convergence series (issue 11): a pretrained ladder, fine-tuning runs to a dev target, their cells.

    zo2bench sweep experiments/convergence_scaling.toml --profile cpu     # or nox -s convergence_scaling

    ladder.py     the OPT-shaped sizes (0.28 M to 87 M parameters, the largest OPT-125M's shape)
    pretrain.py   backprop pretraining on the synthetic corpus, cached under a digest of its recipe
    finetune.py   one run in any mode: train loss every step, dev metrics at intervals, test at the end
    energy.py     GPU energy from NVML's counter (None without a GPU)
    plan.py       the [convergence] section of an experiment file and the cells it makes
    files.py      [convergence.files.TASK]: a task's data from files (real data) for local model directories
    cell.py       one cell of the sweep: data, pretrained model, fine-tuning, the row
    summary.py    the table a sweep ends with

Real data and a real model, from Python (nothing is downloaded; the model directory holds config.json,
weights and tokenizer.json):

    from zo2bench.config import RunConfig
    from zo2bench.convergence.finetune import Schedule, TaskData, finetune
    from zo2bench.tasks import examples, loaders, tokenizer
    train, dev = loaders.load_sst2("sst2/train.jsonl"), loaders.load_sst2("sst2/validation.jsonl")
    data = TaskData(examples.k_shot(train, 16, seed=0), dev[:500], dev[500:], tokenizer.load_tokenizer("opt-125m/"))
    out = finetune(RunConfig(model="opt-125m/", mode="zo2", steps=20000, batch=16, seq=256, lr=1e-6, eps=1e-3,
                             device="cuda"), data, Schedule(eval_every=500))
The analysis of the rows is zo2bench/analysis/convergence.py.
"""
