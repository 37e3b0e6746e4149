"""Wall-clock time and peak memory of a block of code, for the "erase vs retrain" comparisons.

    with measure(device) as usage:
        train(...)
    usage.wall_time_s, usage.peak_memory_bytes, usage.memory_kind

What "peak memory" means depends on the device, and the result says which (``memory_kind``):

* **CUDA** (``"cuda_max_allocated"``): ``torch.cuda.max_memory_allocated`` over the block, after
  resetting the peak at its start, minus what was allocated at the start: the tensor memory the
  block added at its highest point. Exact; excludes the caching allocator's reserve and CUDA
  context.
* **CPU** (``"rss_above_start"``): the process's resident set size (RSS, ``psutil``), sampled by
  a background thread every ``interval_s`` seconds, maximum minus the RSS at the start. It counts
  everything the process touched (Python objects, allocator caches), can miss a spike shorter
  than the interval, and reads 0 when the block reused memory freed before it. Treat it as an
  estimate of the order of magnitude, not a byte count.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import psutil
import torch


@dataclass
class Usage:
    """What :func:`measure` reports (filled in when the block exits).

    Attributes:
        wall_time_s: Elapsed wall-clock seconds (``time.perf_counter``; CUDA synchronised).
        peak_memory_bytes: Peak memory above the start (see the module docstring).
        memory_kind: ``"cuda_max_allocated"`` or ``"rss_above_start"``.
        samples: RSS samples taken (CPU only).
    """

    wall_time_s: float = float("nan")
    peak_memory_bytes: int = 0
    memory_kind: str = ""
    samples: int = 0

    @property
    def peak_memory_mb(self) -> float:
        """Peak memory in MiB."""
        return self.peak_memory_bytes / 2**20


class _RssSampler(threading.Thread):
    """Samples the process's RSS until stopped, keeping the maximum."""

    def __init__(self, interval_s: float):
        super().__init__(daemon=True)
        self.process = psutil.Process()
        self.interval_s = interval_s
        self.start_rss = self.process.memory_info().rss
        self.peak = self.start_rss
        self.samples = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)
        self.samples += 1

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()  # one last reading at the end of the block


@contextlib.contextmanager
def measure(device: torch.device | str | None = None, interval_s: float = 0.01):
    """Measure the wall time and peak memory of the ``with`` block.

    Args:
        device: Where the work runs; a CUDA device selects CUDA memory, anything else the
            process's RSS.
        interval_s: RSS sampling period on the CPU.

    Yields:
        A :class:`Usage`, filled in when the block exits (also if it raises).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    usage = Usage()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start_allocated = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        try:
            yield usage
        finally:
            torch.cuda.synchronize(device)
            usage.wall_time_s = time.perf_counter() - start
            usage.peak_memory_bytes = max(0, torch.cuda.max_memory_allocated(device) - start_allocated)
            usage.memory_kind = "cuda_max_allocated"
        return
    sampler = _RssSampler(interval_s)
    sampler.start()
    start = time.perf_counter()
    try:
        yield usage
    finally:
        usage.wall_time_s = time.perf_counter() - start
        sampler.stop()
        usage.peak_memory_bytes = max(0, sampler.peak - sampler.start_rss)
        usage.memory_kind = "rss_above_start"
        usage.samples = sampler.samples


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``"auto"``/``None`` → CUDA when available, else CPU; anything else as given."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
