"""Choose the Gauss–Newton erases' settings on the validation split (never the test split), for both arms.

For one request per arm (MovieLens RC 10% in the recommendation arm, spurious-shape RC 40% in
the multimodal arm; request and run seed 0; ``eval_split="val"``: every metric on validation
examples), against K = 3 retrains shared by every candidate (:class:`eraserlab.protocol.RetrainPool`
keeps Corrupted and the retrains, so a candidate costs only its erase and its evaluation):

1. a reference run: Retrain (its wall-clock is the budget's unit) and LLMEraser as the paper has
   it (Hessian, one step, the arm's settings), and one Gauss–Newton erase at ``damping="auto"``,
   whose Lanczos estimate of λ_max(G) sets the scale of the candidates;
2. the one-step Gauss–Newton erase for each damping λ = f · λ_max(G), f in ``DAMPING_FACTORS``,
   and each step budget in ``STEP_BUDGETS`` (the solver's mini-batch products; ``tolerance`` 0:
   the budget is the cost), ``top_eigenvalue`` given (no Lanczos run inside the erase);
3. the re-linearised erase (``steps`` in ``STEPS``) at the one-step choice.

The rule: the smallest mean residual r over the three distances (``r/jsd_test``,
``r/jsd_corrected``, ``r/forget_loss``: 0 = as close as another retraining, 1 = no better than
Corrupted; an r below 0 counts as 0, it is within retraining's noise) among the candidates that
cost at most ``BUDGET`` of one retraining; if none does, the cheapest. At ``--size default`` the choice and the evidence are written to
:mod:`eraserlab.erase_settings` (which the arms' "small" presets read) and to
``benchmarks/results/erase_selection-default.json``; ``--size tiny`` only writes its record.

    python -m benchmarks.erase_selection [--size tiny|default] [--arms rec mllm] [--cache-dir DIR]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from benchmarks import reporting

DAMPING_FACTORS = (0.1, 0.03, 0.01, 0.003)
STEP_BUDGETS = (24, 64)
STEPS = (2, 3)
#: A candidate may cost at most this share of one retraining (the project's goal for an erase).
BUDGET = 0.1
DISTANCES = ("jsd_test", "jsd_corrected", "forget_loss")
COLUMNS = ("r/jsd_test", "r/jsd_corrected", "r/forget_loss", "mean_r", "time_s", "cost_share", "test_loss",
           "certificate_ratio")
SETTINGS_MODULE = Path(__file__).resolve().parents[1] / "eraserlab" / "erase_settings.py"
REQUESTS = {"rec": {"dataset": "movielens", "task": "rc", "ratio": 0.1},
            "mllm": {"benchmark": "spurious", "task": "rc", "ratio": 0.4}}


def _runner(arm: str, size: str, cache_dir: str | None):
    """(run(config, methods) → frame indexed by method, the arm's base config)."""
    from eraserlab.protocol import RetrainPool

    pool = RetrainPool([0])
    if arm == "rec":
        from eraserlab.rec.experiment import PRESETS, run_experiment

        preset = "small" if size == "default" else "tiny"

        def run(config, methods):
            request = REQUESTS["rec"]
            return run_experiment(request["dataset"], request["task"], ratio=request["ratio"], seed=0,
                                  model_size=preset, config=config, methods=methods, cache_dir=cache_dir,
                                  progress=False, retrain_pool=pool, eval_split="val").set_index("method")
    else:
        from eraserlab.mllm.experiment import PRESETS, run_experiment

        preset = "small" if size == "default" else "tiny"

        def run(config, methods):
            request = REQUESTS["mllm"]
            return run_experiment(request["benchmark"], request["task"], ratio=request["ratio"], seed=0,
                                  preset=preset, config=config, methods=methods, cache_dir=cache_dir,
                                  progress=False, retrain_pool=pool, eval_split="val").set_index("method")
    return run, PRESETS[preset], preset


def _row(frame, name: str, retrain_seconds: float, **labels: Any) -> dict[str, Any]:
    row = frame.loc[name]
    values = {c: float(row[c]) for c in ("r/jsd_test", "r/jsd_corrected", "r/forget_loss", "time_s", "test_loss",
                                         "certificate_ratio")}
    # r < 0 is "within retraining's noise", no better than 0: the score counts only what is left above it
    values["mean_r"] = sum(max(values[f"r/{d}"], 0.0) for d in DISTANCES) / len(DISTANCES)
    values["cost_share"] = values["time_s"] / retrain_seconds
    return {**labels, **values, "warnings": row.get("warnings", "")}


def _choose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    affordable = [r for r in rows if r["cost_share"] <= BUDGET]
    if not affordable:
        return min(rows, key=lambda r: r["cost_share"])
    return min(affordable, key=lambda r: (r["mean_r"], r["cost_share"]))


def select_arm(arm: str, size: str, cache_dir: str | None) -> dict[str, Any]:
    """The candidates of one arm, measured, and the choice."""
    run, base, preset = _runner(arm, size, cache_dir)
    settings = base.settings
    started = time.perf_counter()
    auto = dataclasses.replace(settings, gauss_newton_damping="auto", gauss_newton_options={})
    frame = run(dataclasses.replace(base, settings=auto), ["retrain", "llmeraser", "llmeraser_gn"])
    retrain_seconds = float(frame.loc["retrain", "time_s"])
    reference = {"retrain_time_s": retrain_seconds,
                 "hessian_one_step": _row(frame, "llmeraser", retrain_seconds, method="llmeraser"),
                 "gauss_newton_auto": _row(frame, "llmeraser_gn", retrain_seconds, method="llmeraser_gn",
                                           damping="auto")}
    top = _gauss_newton_top(run, base)
    print(f"  [{arm}] reference in {time.perf_counter() - started:.0f} s; λ_max(G) ≈ {top:.4g}", flush=True)

    one_step = []
    for factor in DAMPING_FACTORS:
        for budget in STEP_BUDGETS:
            options = {**settings.erase_options, "top_eigenvalue": top, "max_steps": budget, "tolerance": 0.0}
            candidate = dataclasses.replace(settings, gauss_newton_damping=factor * top, gauss_newton_options=options)
            frame = run(dataclasses.replace(base, settings=candidate), ["retrain", "llmeraser_gn"])
            one_step.append(_row(frame, "llmeraser_gn", retrain_seconds, damping_factor=factor, max_steps=budget))
            print(f"  [{arm}] λ = {factor:g}·λ_max, {budget} steps: mean r {one_step[-1]['mean_r']:.3f}, "
                  f"cost {one_step[-1]['cost_share']:.3f} of a retraining", flush=True)
    chosen = _choose(one_step)
    relinearised = []
    options = {**settings.erase_options, "top_eigenvalue": top, "max_steps": chosen["max_steps"], "tolerance": 0.0}
    for steps in STEPS:
        candidate = dataclasses.replace(settings, gauss_newton_damping=chosen["damping_factor"] * top,
                                        gauss_newton_options=options, gauss_newton_steps=steps)
        frame = run(dataclasses.replace(base, settings=candidate), ["retrain", "llmeraser_gn_steps"])
        relinearised.append(_row(frame, "llmeraser_gn_steps", retrain_seconds, damping_factor=chosen["damping_factor"],
                                 max_steps=chosen["max_steps"], steps=steps))
        print(f"  [{arm}] {steps} steps: mean r {relinearised[-1]['mean_r']:.3f}, "
              f"cost {relinearised[-1]['cost_share']:.3f}", flush=True)
    chosen_steps = min(relinearised, key=lambda r: (r["mean_r"], r["cost_share"]))
    settings_chosen = {
        "gauss_newton_damping": chosen["damping_factor"] * top,
        "gauss_newton_options": {**settings.erase_options, "top_eigenvalue": top, "max_steps": chosen["max_steps"],
                                 "tolerance": 0.0},
        "gauss_newton_steps": chosen_steps["steps"],
    }
    return {"request": {**REQUESTS[arm], "seed": 0, "eval_split": "val", "preset": preset},
            "rule": f"min validation mean r over {DISTANCES} among candidates costing ≤ {BUDGET:g} of a retraining "
                    "(else the cheapest); steps: min mean r",
            "gauss_newton_top_eigenvalue": top, "reference": reference, "one_step": one_step,
            "relinearised": relinearised, "chosen": settings_chosen,
            "record": "benchmarks/results/erase_selection-default.json", "seconds": time.perf_counter() - started}


def _gauss_newton_top(run, base) -> float:
    """λ_max of the data Gauss–Newton matrix of Corrupted (Lanczos, as erase's "auto" damping runs it)."""
    from eraserlib.objective import TrainingObjective
    from eraserlib.solvers import estimate_spectrum
    from eraserlab.protocol.methods import MethodOutput, register, unregister

    captured: dict[str, Any] = {}

    def probe(context):  # a throwaway method: the spectrum at Corrupted, no update
        objective = TrainingObjective(context.corrupted, context.loss_fn, context.scenario.train,
                                      weight_decay=context.train_config.weight_decay,
                                      batch_size=context.settings.erase_batch_size, collate_fn=context.collate_fn,
                                      seed=context.seed, curvature="gauss_newton")
        with objective.evaluation():
            captured["spectrum"] = estimate_spectrum(objective)
        return MethodOutput([context.from_corrupted()], {"time_s": 0.0, "peak_memory_mb": 0.0, "memory_kind": "",
                                                         "time_what": "spectrum probe"})

    register("spectrum_probe")(probe)
    try:
        run(base, ["spectrum_probe"])
    finally:
        unregister("spectrum_probe")
    return float(captured["spectrum"].largest)


def write_settings_module(chosen: dict[str, Any]) -> None:
    """Rewrite :mod:`eraserlab.erase_settings` with the choice and its evidence (atomically)."""
    reporting.rewrite_assignment(SETTINGS_MODULE, "ERASE_SMALL", chosen)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = reporting.parser("erase_selection", __doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=None, help="where the arms cache their pre-trained bases")
    parser.add_argument("--arms", nargs="+", default=["rec", "mllm"], choices=["rec", "mllm"])
    arguments = parser.parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    result = {arm: select_arm(arm, arguments.size, arguments.cache_dir) for arm in arguments.arms}
    path = reporting.write_record(arguments, result, started, machine)
    if arguments.size == "default":  # the arms not run this time keep their earlier choice
        from eraserlab.erase_settings import ERASE_SMALL

        write_settings_module({**ERASE_SMALL, **{arm: {"settings": entry["chosen"],
                                                        "selection": {k: v for k, v in entry.items() if k != "chosen"}}
                                                  for arm, entry in result.items()}})
    for arm, entry in result.items():
        print(f"{arm}: chose {entry['chosen']}")
        print(reporting.format_table(entry["one_step"], ["damping_factor", "max_steps", *COLUMNS]))
        print(reporting.format_table(entry["relinearised"], ["steps", *COLUMNS]))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
