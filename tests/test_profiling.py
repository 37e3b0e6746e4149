"""The profiler measures what it says: elapsed time, and memory the block added."""

import time

import pytest
import torch

from eraserlib.profiling import measure


def test_cpu_measure_sees_time_and_an_allocation():
    with measure("cpu", interval_s=0.005) as usage:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched (ones writes every page)
        time.sleep(0.05)
        del block
    assert usage.memory_kind == "rss_above_start"
    assert usage.wall_time_s >= 0.05
    assert usage.samples >= 2
    assert 48 <= usage.peak_memory_mb < 1024  # the allocation, give or take the allocator


def test_measure_fills_the_result_when_the_block_raises():
    with pytest.raises(RuntimeError):
        with measure("cpu") as usage:
            raise RuntimeError("boom")
    assert usage.wall_time_s >= 0 and usage.memory_kind == "rss_above_start"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_measure_counts_allocated_bytes():
    with measure("cuda") as usage:
        block = torch.empty(32 * 2**20 // 4, device="cuda")
        del block
    assert usage.memory_kind == "cuda_max_allocated"
    assert usage.peak_memory_bytes >= 32 * 2**20
