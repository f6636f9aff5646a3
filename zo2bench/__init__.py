"""zo2bench: benchmarks and scalability analysis for zeroth-order fine-tuning with CPU offloading (ZO2)."""

__version__ = "0.1.0"
