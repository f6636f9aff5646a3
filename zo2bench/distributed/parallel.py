"""The parallel degrees of a distributed ZO run as one object, checked once, and the meshes built once.

    world = World.from_env()                                  # RANK, WORLD_SIZE, ... as torchrun sets them
    dims = ParallelDims.resolve(cfg, world.size, world.local_size, gpus=torch.cuda.device_count())
    dims.strategy                                             # "dp2xpert2+shard4" (a record's name for it)
    mesh = dims.build_mesh("cuda")                            # after init_process_group
    mesh.group("dp"), mesh.rank("pert"), mesh.group("weight")

Two degrees split the compute and multiply to the world size: `dp` (each rank a shard of the global
batch) and `pert` (the + and - passes on different ranks). The third, `weight`, splits the weights
rather than the work: the ranks of a weight group hold one slice each of every decoder block and
all-gather a block when it is used, so it must divide the ranks of a host (one shared host copy per
group). Rank r sits at (dp, pert) = divmod(r, pert) and in weight group r // weight: perturbation pairs
and weight groups are neighbouring ranks, which torchrun places on one host. The rest of the code asks
the mesh for groups and ranks and never computes them by hand.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from zo2bench.config import RunConfig
from zo2bench.errors import UserError


@dataclass(frozen=True)
class World:
    """Where this process sits, as torchrun's environment says (one process alone: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @classmethod
    def from_env(cls, env=None) -> World:
        env = os.environ if env is None else env
        get = lambda name, default: int(env.get(name, default))
        size = get("WORLD_SIZE", 1)
        return cls(get("RANK", 0), size, get("LOCAL_RANK", 0), get("LOCAL_WORLD_SIZE", size))

    @staticmethod
    def launched(env=None) -> bool:
        """True inside a process that torchrun started."""
        env = os.environ if env is None else env
        return all(k in env for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


@dataclass(frozen=True)
class ParallelDims:
    dp: int        # data-parallel degree
    pert: int      # perturbation-parallel degree: 1 or 2
    weight: int    # ranks per weight group (1: every rank holds whole blocks)
    world: int     # ranks in all
    local: int     # ranks per host

    @classmethod
    def resolve(cls, cfg: RunConfig, world: int, local: int, gpus: int | None = None) -> ParallelDims:
        """The degrees cfg asks for (0: the default) on this world; UserError for one that cannot work.
        `gpus`: CUDA devices on this host when the run is on GPUs (one rank a GPU), None on the CPU."""
        if gpus is not None and local > gpus:
            raise UserError(f"{local} ranks on this host but it has {gpus} CUDA GPU(s): one rank a GPU "
                            f"(--nproc-per-node at most {gpus})")
        if world % local:
            raise UserError(f"world of {world} ranks is not a whole number of hosts of {local} ranks")
        dp, pert = cfg.dp, cfg.pert
        for name, given in (("dp", dp), ("pert", pert)):
            if given and world % given:
                raise UserError(f"--{name} {given} does not divide the world of {world} ranks")
        if not dp and not pert:  # two passes on two ranks need no batch split; the rest split the batch
            pert = 2 if world % 2 == 0 else 1
        dp, pert = dp or world // pert, pert or world // dp
        weight = cfg.weight_shard or (local if cfg.mode == "zo2" else 1)
        dims = cls(dp, pert, weight, world, local)
        dims.check(cfg)
        return dims

    def check(self, cfg: RunConfig) -> None:
        if self.dp * self.pert != self.world:
            raise UserError(f"--dp {self.dp} x --pert {self.pert} = {self.dp * self.pert} ranks, "
                            f"but the world has {self.world}")
        if self.pert not in (1, 2):
            raise UserError(f"{self.world} ranks as --dp {self.dp} x --pert {self.pert}: a MeZO step has two "
                            "perturbed passes, so --pert is 1 or 2")
        if cfg.batch % self.dp:
            raise UserError(f"--batch {cfg.batch} does not divide into {self.dp} data-parallel shards; "
                            f"use a multiple of {self.dp}, or --dp 1 --pert {min(2, self.world)}")
        if self.local % self.weight:
            raise UserError(f"--weight-shard {self.weight} must divide the {self.local} ranks of a host "
                            "(a weight group shares one host's memory)")
        if self.world > 1 and cfg.mode not in ("mezo", "zo2"):
            raise UserError(f"distributed runs are for the ZO modes; {cfg.mode} runs on one device")
        if self.weight > 1 and cfg.gpu_budget_gib is not None:
            raise UserError("--gpu-budget and --weight-shard both decide which blocks stay on the GPU; "
                            "choose one")
        if self.weight > 1 and cfg.writeback_every > 1:  # shard.py writes its slices back every step
            raise UserError(f"--writeback-every {cfg.writeback_every} is not built for sharded weights "
                            f"(--weight-shard {self.weight}); use --weight-shard 1, or --writeback-every 1")
        if self.world > 1 and ":" in cfg.device:
            raise UserError(f"--device {cfg.device}: each rank of a distributed run takes the GPU of its "
                            "local rank; use --device cuda, auto or cpu")

    @property
    def strategy(self) -> str:
        """A short name: "dp2xpert2", "pert2+shard2" ("single" for one rank)."""
        parts = [f"{k}{v}" for k, v in (("dp", self.dp), ("pert", self.pert)) if v > 1]
        name = "x".join(parts) or "single"
        return name + (f"+shard{self.weight}" if self.weight > 1 else "")

    def as_dict(self) -> dict:
        return {"dp": self.dp, "pert": self.pert, "weight_shard": self.weight, "world_size": self.world,
                "ranks_per_host": self.local, "strategy": self.strategy}

    def build_mesh(self, device_type: str) -> Mesh:
        return Mesh(self, device_type)


class Mesh:
    """The process groups of a ParallelDims: built once (collectively, on every rank), then only asked."""

    def __init__(self, dims: ParallelDims, device_type: str):
        from torch.distributed.device_mesh import init_device_mesh

        self.dims = dims
        self.compute = init_device_mesh(device_type, (dims.dp, dims.pert), mesh_dim_names=("dp", "pert"))
        self.weights = init_device_mesh(device_type, (dims.world // dims.weight, dims.weight),
                                        mesh_dim_names=("replica", "weight"))

    def _mesh(self, dim: str):
        return self.weights if dim in ("replica", "weight") else self.compute

    def group(self, dim: str):
        return self._mesh(dim).get_group(dim)

    def rank(self, dim: str) -> int:
        return self._mesh(dim).get_local_rank(dim)
