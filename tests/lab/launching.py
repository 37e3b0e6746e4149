"""Launch a command (a torchrun launch and its ranks) and wait for it, killing the whole process group on a hang."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_to_end(arguments: list[str], processes: int, timeout: float) -> subprocess.CompletedProcess:
    """``python ARGUMENTS`` in one process, or under ``torch.distributed.run`` on ``processes`` ranks (one thread each).

    A launch that outlives ``timeout`` seconds is a hang: the launcher and its ranks are killed and the test fails.
    """
    command = [sys.executable, *arguments] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *arguments]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")  # the same thread count in every launch: the same floating-point sums
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the {processes}-process launch hung for {timeout} s:\n{output[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output)
