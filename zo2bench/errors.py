"""The errors a user can cause or a run can hit, each typed so callers can react.

    try:
        record = trainer.run(cfg)
    except GPUOutOfMemory as e:      # a sweep records e.as_dict() and goes on
        ...
    except UserError as e:           # the CLI prints str(e) and exits with status 2
        ...
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: the CLI prints the message alone and exits with status 2."""

    exit_code = 2


class GPUOutOfMemory(RuntimeError):
    """The device ran out of memory. Carries the configuration and the memory in use when it failed."""

    def __init__(self, config: dict, allocated_bytes: int, reserved_bytes: int, total_bytes: int, detail: str = ""):
        self.config = config
        self.allocated_bytes = allocated_bytes
        self.reserved_bytes = reserved_bytes
        self.total_bytes = total_bytes
        self.detail = detail
        gib = 2**30
        super().__init__(
            f"out of GPU memory running {config.get('model')} mode={config.get('mode')} batch={config.get('batch')} "
            f"seq={config.get('seq')} dtype={config.get('dtype')}: {allocated_bytes / gib:.2f} GiB allocated, "
            f"{reserved_bytes / gib:.2f} GiB reserved of {total_bytes / gib:.2f} GiB"
        )

    def as_dict(self) -> dict:
        return {
            "allocated_bytes": self.allocated_bytes,
            "reserved_bytes": self.reserved_bytes,
            "total_bytes": self.total_bytes,
            "detail": self.detail,
        }


class NonFiniteLoss(RuntimeError):
    """A loss came out NaN or infinite; the run stops at that step."""

    def __init__(self, step: int, seed: int, loss_plus: float, loss_minus: float | None = None):
        self.step, self.seed = step, seed
        shown = f"loss+={loss_plus}" + ("" if loss_minus is None else f", loss-={loss_minus}")
        super().__init__(f"non-finite loss at step {step} (run seed {seed}): {shown}")
