"""GPU energy from NVML's total-energy counter, read at chosen moments (no sampling thread).

    meter = EnergyMeter("cuda:0")    # on the CPU, or without NVML: meter.read() is None, meter.why says why
    e0 = meter.read(); ...; e1 = meter.read()   # joules since the meter opened; e1 - e0 is the work's energy
    meter.close()

The counter (nvmlDeviceGetTotalEnergyConsumption, millijoules since the driver loaded) covers the whole
GPU, every process on it included. None is "not measured", never 0.
"""
from __future__ import annotations


class EnergyMeter:
    def __init__(self, device: str):
        self.nvml = self.handle = self.e0 = None
        self.why = None
        if not str(device).startswith("cuda"):
            self.why = f"device {device} has no GPU energy counter"
            return
        try:
            from zo2bench.probes.nvml import find_gpu, load_nvml

            self.nvml = load_nvml()
            self.handle, how = find_gpu(self.nvml, device)
            if self.handle is None:
                self.why = how
                return
            self.e0 = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except Exception as e:  # no pynvml, no driver, or a GPU without the counter
            self.handle, self.why = None, f"NVML total energy counter unavailable: {type(e).__name__}: {e}"

    def read(self) -> float | None:
        """Joules since the meter opened, or None where not measured."""
        if self.handle is None:
            return None
        try:
            return (self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) - self.e0) / 1000.0
        except Exception as e:
            self.handle, self.why = None, f"NVML total energy counter failed: {type(e).__name__}: {e}"
            return None

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass
            self.nvml = None
