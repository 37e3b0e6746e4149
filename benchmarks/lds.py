"""Influence accuracy as the field measures it: the linear datamodeling score (LDS) of each curvature.

LDS (Park et al., 2023, "TRAK"): draw S random removal subsets Sⱼ of the training data (each a
share α of it), retrain the model without each (same initialisation, same recipe, same seed), and
for every test example z compare the *actual* change of its loss, ℓ(z; θ_{−Sⱼ}) − ℓ(z; θ̂), with
the *predicted* one, Σ_{i∈Sⱼ} τ(z, i) (the first-order effect of removing Sⱼ; the common factor
1/(n − k) does not change a rank). LDS is Spearman's correlation over the S subsets, averaged
over the test examples. The attributions τ(z, i) = ∇ℓ(z)ᵀ P ∇ℓ(zᵢ), P the inverse curvature of

* ``hessian``: (H + λI)⁻¹, the dense Hessian, eraserlib's "auto" damping (:func:`eraserlib.damping.auto_damping`);
* ``gauss_newton``: (G + λI)⁻¹, the dense Gauss–Newton matrix, its "auto" damping (λ_max/100);
* ``datainf``: DataInf's closed form with its own per-tensor damping (:class:`eraserlib.solvers.DataInf`);
* ``ekfac``: kronfluence's EK-FAC (Grosse et al., 2023) on the LoRA matrices, its default damping
  (0.1 × the mean eigenvalue per module), fitted with ``Analyzer(..., cpu=True)`` — only when
  kronfluence is installed (``pip install --no-deps -r benchmarks/requirements-kronfluence.txt``);
* ``gradient_dot``: P = I (no curvature), for scale.

The model is the tiny LoRA Llama of :mod:`eraserlib.toy.tiny_lora` (retrains take about a second).

    python -m benchmarks.lds [--size tiny|default] [--out FILE]
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from typing import Any

import numpy as np
import torch

from benchmarks import reporting

SIZES = {"tiny": {"n": 32, "test": 6, "subsets": 6, "epochs": 4, "share": 0.5},
         "default": {"n": 128, "test": 32, "subsets": 64, "epochs": 30, "share": 0.5}}
KRONFLUENCE_HINT = "pip install --no-deps -r benchmarks/requirements-kronfluence.txt"


def kronfluence_available() -> bool:
    try:
        import kronfluence  # noqa: F401
    except ImportError:
        return False
    return True


def _setup(settings: dict[str, Any], seed: int):
    from eraserlib.toy.tiny_lora import TinyLoraConfig, build_model, language_model_loss, make_sequences
    from eraserlib.training import TrainConfig, train

    config = TinyLoraConfig(num_examples=settings["n"], seed=seed)
    data = make_sequences(config)
    test = make_sequences(config, num_examples=settings["test"], seed_offset=7)
    recipe = TrainConfig(epochs=settings["epochs"], lr=1e-2, batch_size=32, max_grad_norm=None, seed=seed)

    def trained_on(examples):
        model = build_model(config)  # the same seeded initialisation every time
        train(model, language_model_loss, examples, recipe, progress=False)
        return model

    return data, test, trained_on, language_model_loss


def _test_losses(model, loss_fn, test) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return np.array([float(loss_fn(model, z.unsqueeze(0))) for z in test])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when one side is constant."""
    from scipy.stats import rankdata

    x, y = rankdata(a), rankdata(b)
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def linear_datamodeling_score(scores: np.ndarray, subsets: list[list[int]], actual: np.ndarray) -> dict[str, float]:
    """LDS from attributions ``scores`` (test × train), removal ``subsets`` and actual changes (subsets × test)."""
    predicted = np.stack([scores[:, subset].sum(1) for subset in subsets])  # (S, m)
    per_test = np.array([spearman(predicted[:, j], actual[:, j]) for j in range(actual.shape[1])])
    finite = per_test[np.isfinite(per_test)]
    return {"lds": float(finite.mean()) if len(finite) else math.nan,
            "lds_std_over_test_examples": float(finite.std()) if len(finite) else math.nan,
            "test_examples": int(len(finite))}


def curvature_attributions(model, loss_fn, data, test) -> dict[str, Any]:
    """τ for the dense Hessian, the dense Gauss–Newton matrix, DataInf and plain gradients; with their dampings."""
    from eraserlib.damping import auto_damping, gauss_newton_damping
    from eraserlib.objective import TrainingObjective
    from eraserlib.solvers import DataInf, Spectrum, dense_gauss_newton, dense_hessian

    objective = TrainingObjective(model, loss_fn, data, batch_size=32, curvature="gauss_newton")
    out: dict[str, Any] = {}
    with objective.evaluation():
        train_gradients = objective.per_example_gradients(data).double()  # (n, p)
        test_gradients = objective.per_example_gradients(test).double()  # (m, p)
        for name, matrix, rule in (("hessian", dense_hessian(objective), auto_damping),
                                   ("gauss_newton", dense_gauss_newton(objective), gauss_newton_damping)):
            eigenvalues = torch.linalg.eigvalsh(matrix)
            lam = rule(Spectrum(float(eigenvalues[0]), float(eigenvalues[-1]), exact=True), 0.0)
            system = matrix + lam * torch.eye(len(matrix), dtype=torch.float64)
            out[name] = {"scores": (torch.linalg.solve(system, test_gradients.T).T @ train_gradients.T).numpy(),
                         "damping": lam, "smallest_eigenvalue": float(eigenvalues[0]),
                         "largest_eigenvalue": float(eigenvalues[-1])}
        cached = _CachedGradients(objective, train_gradients.to(objective.vector_dtype))
        solver = DataInf()
        preconditioned = torch.stack([solver.solve(cached, g.to(objective.vector_dtype), None).solution.double()
                                      for g in test_gradients])
        out["datainf"] = {"scores": (preconditioned @ train_gradients.T).numpy(), "damping": "DataInf's own rule"}
        out["gradient_dot"] = {"scores": (test_gradients @ train_gradients.T).numpy(), "damping": None}
    return out


class _CachedGradients:
    """The objective with its per-example gradients computed once (DataInf recomputes them on every solve)."""

    def __init__(self, objective, gradients: torch.Tensor):
        self._objective, self._gradients = objective, gradients

    def __getattr__(self, name: str):
        return getattr(self._objective, name)

    def subsample(self, size):
        return self._objective.train_data

    def per_example_gradients(self, examples):
        return self._gradients


def ekfac_attributions(model, loss_fn, data, test, seed: int) -> dict[str, Any]:
    """kronfluence's EK-FAC pairwise scores on the LoRA matrices (test × train), default damping."""
    import copy

    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task

    tracked = [name for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and (".lora_A." in name or ".lora_B." in name)]

    class LanguageModelTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            logits = model(input_ids=batch).logits[:, :-1].float()
            flat = logits.reshape(-1, logits.shape[-1])
            if sample:  # the true Fisher: labels drawn from the model's own predictions
                with torch.no_grad():
                    targets = torch.multinomial(torch.softmax(flat.detach(), -1), 1).squeeze(-1)
            else:
                targets = batch[:, 1:].reshape(-1)
            # a sum over examples of each example's mean token loss (kronfluence sums over the batch)
            return torch.nn.functional.cross_entropy(flat, targets, reduction="sum") / (batch.shape[1] - 1)

        def compute_measurement(self, batch, model):
            return self.compute_train_loss(batch, model, sample=False)

        def get_influence_tracked_modules(self):
            return tracked

    torch.manual_seed(seed)  # the sampled labels of the true Fisher
    task = LanguageModelTask()
    prepared = prepare_model(copy.deepcopy(model).eval(), task)
    with tempfile.TemporaryDirectory() as directory, warnings.catch_warnings():
        # kronfluence 1.0.1 builds torch.cuda.amp.GradScaler (deprecated) even on the CPU, disabled
        warnings.filterwarnings("ignore", message=r"`torch.cuda.amp.GradScaler", category=FutureWarning)
        analyzer = Analyzer("lds", prepared, task, cpu=True, disable_tqdm=True, output_dir=directory)
        analyzer.fit_all_factors("ekfac", data, per_device_batch_size=32,
                                 factor_args=FactorArguments(strategy="ekfac"), overwrite_output_dir=True)
        analyzer.compute_pairwise_scores("scores", "ekfac", test, data, per_device_query_batch_size=len(test),
                                         per_device_train_batch_size=32,
                                         score_args=ScoreArguments(damping_factor=None), overwrite_output_dir=True)
        scores = analyzer.load_pairwise_scores("scores")["all_modules"]
    return {"scores": scores.double().numpy(), "damping": "kronfluence's 0.1 × mean eigenvalue per module",
            "tracked_modules": len(tracked)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("lds", __doc__.splitlines()[0]).parse_args(argv)
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    settings = SIZES[arguments.size]
    data, test, trained_on, loss_fn = _setup(settings, arguments.seed)
    model = trained_on(data)
    base = _test_losses(model, loss_fn, test)
    generator = torch.Generator().manual_seed(arguments.seed + 17)
    k = round(settings["share"] * len(data))
    subsets = [sorted(torch.randperm(len(data), generator=generator)[:k].tolist()) for _ in range(settings["subsets"])]
    start = time.perf_counter()
    actual = np.stack([_test_losses(trained_on([z for i, z in enumerate(data) if i not in set(subset)]), loss_fn, test)
                       - base for subset in subsets])  # (S, m)
    retrain_seconds = time.perf_counter() - start
    methods = curvature_attributions(model, loss_fn, data, test)
    if kronfluence_available():
        methods["ekfac"] = ekfac_attributions(model, loss_fn, data, test, arguments.seed)
    rows, skipped = [], {}
    for name, result in methods.items():
        rows.append({"method": name, **linear_datamodeling_score(result["scores"], subsets, actual),
                     **{k: v for k, v in result.items() if k != "scores"}})
    if "ekfac" not in methods:
        skipped["ekfac"] = f"kronfluence is not installed ({KRONFLUENCE_HINT})"
    record = {"settings": settings, "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
              "removed_per_subset": k, "retrain_seconds_total": retrain_seconds, "rows": rows, "skipped": skipped,
              "mean_actual_change": float(actual.mean())}
    path = reporting.write_record(arguments, record, started, machine)
    print(f"LDS on the tiny LoRA Llama: n = {len(data)}, {len(test)} test examples, {len(subsets)} subsets of {k} "
          f"removed, p = {record['parameters']}")
    print(reporting.format_table(rows, ["method", "lds", "lds_std_over_test_examples", "damping"]))
    for name, why in skipped.items():
        print(f"{name}: skipped, {why}")
    print(f"wrote {path}")
    return {"path": path, "record": record}


if __name__ == "__main__":
    main()
