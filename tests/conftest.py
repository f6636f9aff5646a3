"""Test tiers: CPU unit tests through the real code path on tiny models, and a GPU tier.

    pytest                 # everything this machine can run; GPU tests are skipped without CUDA
    pytest -m gpu          # exactly the GPU tier (on a GPU machine)
    pytest -m "not gpu"    # the CPU tier

A test needs a GPU when it carries @pytest.mark.gpu; `gpu2` marks those that need two.
"""
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for item in items:
        if item.get_closest_marker("gpu2") is not None:
            item.add_marker(pytest.mark.gpu)
            if n < 2:
                item.add_marker(pytest.mark.skip(reason=f"needs two CUDA GPUs (this machine has {n})"))
        elif item.get_closest_marker("gpu") is not None and n < 1:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))
