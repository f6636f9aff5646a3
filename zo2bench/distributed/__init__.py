"""Distributed ZO2 on torch.distributed: data, perturbation and weight parallelism (docs/distributed.md).

    zo2bench run --model opt-13b --mode zo2 --batch 8 --nproc-per-node 4          # dp2 x pert2, shard4
    torchrun --nnodes 2 --nproc-per-node 4 ... -m zo2bench run --model ...          # across hosts

    parallel.py   World (torchrun's environment), ParallelDims (the degrees, checked once), Mesh (the groups)
    shard.py      one shared host copy per weight group; ShardedOffloader: slices uploaded, then all-gathered
    zo_dist.py    make_builder(mesh): the engine's MeZO doing one rank's part (batch shard, one sign, pooled loss)
    measure.py    run_rank(cfg, world): measured_run on each rank, merged into one record on rank 0
    launch.py     relaunch(cfg, out): `zo2bench run --nproc-per-node N` as N ranks of torch.distributed.run

Layering: parallel, shard and zo_dist sit beside the engine (they import it, never the probes or records);
measure and launch sit with zo2bench/measure.py. The engine imports nothing from here.
"""
