"""One rank of ``tests/lab/test_parallel.py``'s launches: ``eraserlab.parallel.run_seeds`` on a stand-in experiment.

The stand-in does with the pool what the protocol's runner does (``eraserlab/protocol/runner.py``): it
asks for its own seed's retrain first and then for the pool's other seeds in order, trains what the
pool does not give it (a seeded linear layer, slowly enough that the ranks overlap), and returns one
row per retrain it compared with, saying which values it saw and whether it trained them itself.

    python -m torch.distributed.run --standalone --nproc_per_node W parallel_worker.py OUT [FAIL_SEED]
"""

import sys
import time

import pandas as pd
import torch

from eraserlab.parallel import launched, run_seeds


def stand_in(name, task, *, seed, request_seed, retrain_pool, results_dir, fail_seed=None):
    rows = []
    for other in retrain_pool.seeds_for(seed, len(retrain_pool.seeds), lambda _seed, _count: []):
        key = f"{name}-{task}-retrain-{other}"
        found = retrain_pool.lookup(key, seed=other)
        trained_here = found is None
        if found is None:
            if other == fail_seed:
                raise ValueError(f"the retrain of seed {other} cannot be trained")
            time.sleep(0.5)
            torch.manual_seed(other)
            model = torch.nn.Linear(3, 1)
            retrain_pool.put(key, model, evaluation={"loss": float(other)}, eval_time_s=0.0, cost={"time_s": 0.5},
                             record={}, seed=other)
            found = retrain_pool.get(key)
            retrain_pool.reused -= 1  # get() above counts a reuse; this one was trained here
        rows.append({"seed": seed, "retrain_seed": other, "trained_here": trained_here,
                     "weight_sum": float(sum(v.sum() for v in found.state.values())),
                     "evaluation": found.evaluation["loss"]})
    frame = pd.DataFrame(rows)
    results_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(results_dir / f"seed{seed}.csv", index=False)
    return frame


def main() -> int:
    out = sys.argv[1]
    fail_seed = int(sys.argv[2]) if len(sys.argv) > 2 else None
    try:
        with launched() as (rank, _):
            frame = run_seeds(stand_in, "toy", "ir", seeds=[0, 1, 2], out=out, fail_seed=fail_seed)
    except Exception as error:  # noqa: BLE001 - the test reads the message and the exit code
        print(f"rank error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"rank {rank} rows {len(frame)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
