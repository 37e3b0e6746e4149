"""eraserlab.records and eraserlab.cache: the machine's state, and locks on cache entries."""

import numpy as np

from eraserlab.records import machine_load


def test_machine_load_is_a_number():
    assert machine_load() >= 0 or np.isnan(machine_load())


def test_cache_lock_makes_a_second_process_wait(tmp_path):
    import subprocess
    import sys
    import time

    from eraserlab.cache import cache_lock

    entry = tmp_path / "base-abc"
    script = ("import sys, time\nfrom eraserlab.cache import cache_lock\n"
              f"with cache_lock({str(entry)!r}):\n    print('got', flush=True)\n")
    with cache_lock(entry):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert child.poll() is None  # still waiting for the lock
    out, _ = child.communicate(timeout=60)
    assert out.strip() == "got" and child.returncode == 0
