"""One rank's part of a distributed MeZO step: the engine's MeZO, told which work is this rank's.

    builder = make_builder(mesh)                   # engine.trainer.run(cfg, builder=builder) on every rank
    trainer = builder(cfg, spec, dev, timeline)    # the engine's trainer face: step, flush, parameters, ...

The step itself is engine/zo.py's, unchanged; each parallel dimension changes one thing around it:
- data parallel (dp > 1): step() hands MeZO this rank's shard of the global batch (whole examples), and
  the head's loss is pooled over the dp group. With dp_reduce "rows" every rank all-gathers the shards'
  per-token losses and reduces them in the one-process order (engine/loss.py reduce_rows): the losses,
  and so the projected gradient and the update, are the one-process run's bit for bit wherever a
  row's forward does not depend on the other rows in its matmuls. With "scalars" the two mean losses are
  all-reduced (two scalars a step): the losses agree to rounding, but g = (l+ - l-) / 2 eps magnifies
  that rounding by l / (l+ - l-), so the run drifts from the one-process one (docs/distributed.md);
- perturbation parallel (pert = 2): pert rank 0 runs only the + pass and pert rank 1 only the - pass,
  on the same batch, then the two losses are all-gathered: the same numbers as one process computes;
- weight sharding (weight > 1): blocks live in one shared host copy per weight group and are split
  across its ranks (shard.py); all-gathering moves bytes, so nothing changes numerically.
Every rank ends a step with the same g and applies the same update from the same seed.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from zo2bench.devices import torch_dtype
from zo2bench.distributed.parallel import Mesh
from zo2bench.distributed.shard import ShardedOffloader, ShardLayout, SharedBlocks, all_gather_into
from zo2bench.engine.loss import causal_lm_loss, reduce_rows, row_losses
from zo2bench.engine.model import ADAPTERS, Batch


def shard_batch(batch: Batch, index: int, ways: int) -> Batch:
    """Examples [index*b, (index+1)*b) of a batch whose every next token is scored (b = B / ways)."""
    if batch.target_pos is not None:
        raise ValueError("data parallel shards batches that score every next token")
    B, T = batch.input_ids.shape
    b, per = B // ways, B // ways * (T - 1)
    rows = slice(index * b, (index + 1) * b)
    return Batch(batch.input_ids[rows], batch.target_ids[index * per:(index + 1) * per], None,
                 batch.position_ids[rows])


def pooled_head(zm, group, ways: int, how: str):
    """The head unit's forward with its loss over the whole global batch (build()'s head_forward, pooled)."""
    adapter = ADAPTERS[zm.spec.family]

    def forward(x, batch):
        hidden, weight = adapter.final_hidden(zm.model, x), zm.model.lm_head.weight
        if how == "scalars":
            loss = causal_lm_loss(hidden, weight, batch).clone()
            dist.all_reduce(loss, group=group)
            return loss / ways
        rows = row_losses(hidden, weight, batch)
        every = rows.new_empty(rows.numel() * ways)
        all_gather_into(every, rows, group)  # in dp-rank order: the global batch's row order
        return reduce_rows(every, weight)

    return forward


def exchanged_losses(group):
    """MeZO's `losses` for perturbation parallelism: this rank's one loss, gathered beside its partner's."""
    def losses(x: dict):
        (mine,) = x.values()
        both = mine.new_empty(2)
        all_gather_into(both, mine.reshape(1), group)  # pert rank 0 ran the + pass, rank 1 the - pass
        return both[0], both[1]

    return losses


class DistTrainer:
    """The engine's trainer face over a MeZO that does this rank's part."""

    def __init__(self, mezo, mesh: Mesh, store: SharedBlocks | None):
        self.mezo, self.mesh, self.store = mezo, mesh, store
        self.dp, self.dp_rank = mesh.dims.dp, mesh.rank("dp")

    def step(self, batch, t: int) -> dict:
        return self.mezo.step(shard_batch(batch, self.dp_rank, self.dp) if self.dp > 1 else batch, t)

    def flush(self) -> None:
        self.mezo.flush()

    def parameters(self):
        """The whole weights. With a weight group they are read from the shared host copy once every rank
        of the group has put its slices there (collective)."""
        if self.store is not None:
            self.mezo.weights.publish()
            dist.barrier(group=self.mesh.group("weight"))
        return self.mezo.parameters()

    def offload_info(self) -> dict:
        out = self.mezo.offload_info()
        out["shared_host_bytes"] = self.store.nbytes if self.store is not None else 0
        return out

    @property
    def build_parts(self):
        return self.mezo.build_parts

    def close(self) -> None:
        self.mezo.close()
        self.store = None


def make_builder(mesh: Mesh):
    """engine.trainer.run's `builder` for this rank: build_trainer's result, distributed by mesh.dims."""
    def builder(cfg, spec, dev, timeline=None):
        from zo2bench.engine.model import build
        from zo2bench.engine.trainer import build_trainer
        from zo2bench.engine.zo import MeZO

        dims, store = mesh.dims, None
        if dims.weight > 1:
            dtype = torch_dtype(cfg.dtype)
            group = mesh.group("weight")
            layout = ShardLayout(spec.block_params(), dims.weight, torch.empty((), dtype=dtype).element_size())
            store = SharedBlocks(group, layout, dtype, spec.layers)
            zm = build(spec, dtype, dev, cfg.seed, host_blocks=store.next_block)
            dist.barrier(group=group)  # every rank has written the shared copy before any rank reads it
            weights = ShardedOffloader(zm, store, group, mesh.rank("weight"), resident=cfg.mode == "mezo",
                                       prefetch=cfg.prefetch, timeline=timeline).attach()
            mezo = MeZO(zm, weights, cfg.lr, cfg.eps, cfg.weight_decay, cfg.seed)
        else:
            mezo = build_trainer(cfg, spec, dev, timeline)
        if dims.pert > 1:
            mezo.signs = (1.0,) if mesh.rank("pert") == 0 else (-1.0,)
            mezo.losses = exchanged_losses(mesh.group("pert"))
        if dims.dp > 1:
            head = next(u for u in mezo.zm.units if u.name == "head")
            head.forward = pooled_head(mezo.zm, mesh.group("dp"), dims.dp, cfg.dp_reduce)
        return DistTrainer(mezo, mesh, store)

    return builder
