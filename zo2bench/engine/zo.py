"""MeZO-SGD, one step reading top to bottom; the same code for `mezo` and `zo2`.

    opt = MeZO(zm, weights, lr=1e-6, eps=1e-3, weight_decay=0.0, seed=0)
    out = opt.step(batch, t=0)   # {"loss", "loss_plus", "loss_minus", "projected_grad"}: 0-d device tensors,
                                 # nothing waits for the GPU; "loss" is the mean of the two (f(theta) to O(eps^2))
    opt.flush()                  # apply the last update, write every block back (before eval, save, the end)
    opt.logits(batch)            # fp32 [N, V] at batch's scored positions, at theta (flushes first; no step)
    opt.close()                  # the weights' holder lets go (zo2: pinned pages released)

At step t with seed s_t, z ~ N(0, I) is regenerated from (s_t, unit) whenever needed, never stored:
    loss+ = L(theta + eps z),  loss- = L(theta - eps z),  g = (loss+ - loss-) / (2 eps)
    theta <- theta - lr_t (g z + wd theta)      (no decay on biases and norm weights)
Each unit is visited once per step: step t-1's update is applied to it first (its z regenerated once),
then both perturbed forward passes run through it while it is held, from theta + eps z and theta - eps z
written into the arena. theta is only ever changed by the update, so
perturbing cannot drift it in any dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from zo2bench.engine.loss import scored_logits
from zo2bench.engine.model import ADAPTERS, ZOModel, unit_seed
from zo2bench.engine.noise import make_noise


def step_seed(seed: int, t: int) -> int:
    return unit_seed(seed + 0x5EED, t)


@dataclass
class Update:
    seeds: list               # each unit's seed at step t, by unit index (ints, or 0-d tensors: engine/graphs.py)
    coef: torch.Tensor        # -lr_t * g_t, a 0-d tensor on the device (no host sync to read g)
    decay: float              # lr_t * weight_decay


def both_here(x: dict) -> tuple:
    return x[1.0], x[-1.0]


class MeZO:
    def __init__(self, zm: ZOModel, weights, lr: float, eps: float, weight_decay: float = 0.0, seed: int = 0,
                 noise: str = "auto", signs: tuple = (1.0, -1.0), losses=both_here):
        self.zm, self.weights = zm, weights
        self.lr, self.eps, self.wd, self.seed = lr, eps, weight_decay, seed
        # The passes this process runs, and how their losses become (loss+, loss-): both here by default;
        # perturbation parallelism runs one sign per rank and gathers the other (zo2bench/distributed).
        self.signs, self.losses = signs, losses
        self.pending: Update | None = None
        self.noise = make_noise(zm.device, zm.dtype, max(u.numel for u in zm.units), noise)

    def _apply(self, unit, theta, upd: Update) -> None:
        if upd.decay:
            for a, b in unit.decay_ranges():
                theta[a:b].mul_(1.0 - upd.decay)
        self.noise.update(theta, upd.seeds[unit.index], upd.coef)

    def _redo(self, unit, upd: Update):
        """The update just applied, as a function a weights holder may keep and replay on an older copy of
        the unit (deferred write-back): the same arithmetic, so the replayed copy is bitwise the same."""
        return lambda theta: self._apply(unit, theta, upd)

    def unit_seeds(self, t: int) -> list[int]:
        """Each unit's seed at step t: z(t, unit) is drawn from it wherever and whenever it is needed."""
        s = step_seed(self.seed, t)
        return [unit_seed(s, u.index) for u in self.zm.units]

    def step(self, batch, t: int, lr: float | None = None):
        return self.run_step(batch, self.unit_seeds(t), self.lr if lr is None else lr)

    @torch.no_grad()  # no autograd state, and the loss takes its no-grad path
    def run_step(self, batch, seeds: list, lr: float):
        """One step with the units' seeds given: ints, or 0-d device tensors that a CUDA graph captured
        once reads anew on each replay (engine/graphs.py)."""
        x = {sign: batch.input_ids for sign in self.signs}
        for unit in self.zm.units:
            with self.weights.use(unit) as theta:
                if self.pending is not None:
                    self._apply(unit, theta, self.pending)
                    self.weights.written(unit, self._redo(unit, self.pending))
                for sign in self.signs:
                    for other in unit.reads:  # a tied head reads the embeddings too, updated at this step's start
                        self._write(other, other.theta, seeds, sign)
                    self._write(unit, theta, seeds, sign)
                    x[sign] = unit.forward(x[sign], batch)
        loss_plus, loss_minus = self.losses(x)
        g = (loss_plus - loss_minus) / (2 * self.eps)
        self.pending = Update(seeds, -lr * g, lr * self.wd)
        return {"loss": (loss_plus + loss_minus) / 2, "loss_plus": loss_plus, "loss_minus": loss_minus,
                "projected_grad": g}

    def _write(self, unit, theta, seeds: list, sign: float) -> None:
        """arena <- theta + sign * eps * z(unit's seed)."""
        self.noise.perturb(self.zm.arena_view(unit), theta, seeds[unit.index], sign * self.eps)

    @property
    def build_parts(self):
        return getattr(self.zm, "build_parts", None)

    def parameters(self):
        return [u.theta for u in self.zm.units]

    def offload_info(self) -> dict:
        return {"pinned_host_bytes": self.weights.host_bytes(), "resident_blocks": self.weights.resident_count()}

    def close(self) -> None:
        self.weights.close()

    @torch.no_grad()
    def logits(self, batch) -> torch.Tensor:
        """Logits at theta itself for evaluation. The pending update lands first, as the next step would
        apply it (the same arithmetic on each unit, in the same order), so evaluating leaves the run's
        trajectory bitwise unchanged."""
        self.flush()
        x, head = batch.input_ids, self.zm.units[-1]
        for unit in self.zm.units:
            with self.weights.use(unit) as theta:
                for other in unit.reads:
                    self.zm.arena_view(other).copy_(other.theta)
                self.zm.arena_view(unit).copy_(theta)
                if unit is head:
                    hidden = ADAPTERS[self.zm.spec.family].final_hidden(self.zm.model, x)
                    return scored_logits(hidden, self.zm.model.lm_head.weight, batch)
                x = unit.forward(x, batch)
        raise AssertionError("the last unit is the head")

    @torch.no_grad()
    def flush(self) -> None:
        """Apply the pending update to every unit and write every streamed block back, so theta is final
        wherever it lives (updates whose write-back was deferred are replayed on the way)."""
        if self.pending is None:
            self.weights.settle()
            return
        for unit in self.zm.units:
            with self.weights.use(unit) as theta:
                self._apply(unit, theta, self.pending)
                self.weights.written(unit)  # no redo: the copy back happens now
        self.pending = None
