"""The profiler measures what it says: elapsed time, and memory the block added."""

import mmap
import time

import pytest
import torch

from eraserlab.profiling import measure


def test_cpu_measure_sees_time_and_an_allocation():
    with measure("cpu", interval_s=0.005) as usage:
        # A fresh anonymous mapping, every page written: 64 MiB of new resident memory whatever
        # the allocator kept from earlier tests (a torch tensor can reuse freed, still-resident
        # heap, and then RSS does not move: CI saw exactly that).
        block = mmap.mmap(-1, 64 * 2**20)
        for offset in range(0, len(block), mmap.PAGESIZE):
            block[offset] = 1
        time.sleep(0.05)
        block.close()
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
