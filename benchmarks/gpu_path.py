"""The GPU path: unit costs and one erase on a LLaMA2-7B-shaped LoRA model, within 10 minutes.

On one H100/H200 (``--size llama-7b``, the default when CUDA is present) this builds
LLaMA2-7B's architecture with random weights in bf16 (or loads ``--checkpoint DIR``, a local
Hugging Face folder; never a hub name), adds LoRA r = 8 on q_proj and v_proj (4.2M trainable
parameters), and measures on batches of 4 × 512 random tokens:

1. seconds per forward, per gradient, per Hessian-vector product (double backward, eager
   attention: SDPA's fused kernels have no second derivative) and per Gauss–Newton product
   (``eraserlib.curvature``), each with its peak memory;
2. the HVP's accuracy in bf16 against float32 (same batch, same vector; relative norm of the
   difference and cosine), at ``--accuracy-batch`` examples so that the float32 copy fits;
3. one real ``eraserlib.erase`` (instance removal, solver llmeraser, bf16 HVPs) on a synthetic
   training set, its step budget fitted to the time left (``--budget-seconds``);
3b. one erase with Gauss–Newton curvature and one re-linearised step (``steps=2``: a second
   solve at the parameters after the first, from the gradient of the corrected objective over
   the data the request leaves, and a line search on a subsample), its pass counts and time;
4. from the measured unit costs, the erase and retrain times of a realistic request
   (``--train-examples`` n, ``--request-share``, ``--epochs``): retraining costs
   epochs·⌈n/B⌉ gradient steps, the erase ⌈k/B⌉ (IR) or 2⌈k/B⌉ (QM/RC) gradients for b plus
   (20 + T) HVPs, independent of n.

For scale, the unit costs reported for LLaMA2-7B with LoRA on one H100 (bf16, batch 4):
forward 0.092 s, gradient 0.202 s, HVP 0.572 s (2.8× a gradient), peak 52 GiB; this
benchmark's GPU record is what measures them here.

On the CPU (``--size tiny``) the same code runs on a 2-layer toy Llama in seconds: that is what
the test suite checks. GPU figures are only what a GPU run writes.

    python -m benchmarks.gpu_path [--size tiny|llama-7b] [--checkpoint DIR] [--out FILE]
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import torch

from benchmarks import reporting

SHAPES: dict[str, dict[str, Any]] = {
    # LLaMA2-7B: hidden 4096, MLP 11008, 32 layers × 32 heads, vocabulary 32000.
    "llama-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "vocab_size": 32000, "sequence_length": 512, "batch_size": 4,
                 "accuracy_batch": 1, "train_set": 256, "request": 16, "repeats": 3, "max_steps": 384,
                 "relinearised_max_steps": 64},
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "vocab_size": 64, "sequence_length": 16, "batch_size": 2, "accuracy_batch": 2, "train_set": 16,
             "request": 2, "repeats": 2, "max_steps": 32, "relinearised_max_steps": 8},
}
PAPER_H100 = {"forward_s": 0.092, "gradient_s": 0.202, "hvp_s": 0.572, "peak_gib": 52.0}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_model(shape: dict[str, Any], device: torch.device, dtype: torch.dtype, checkpoint: str | None,
                rank: int, seed: int):
    """The base (random LLaMA-shaped, or a local checkpoint) with LoRA on q_proj and v_proj."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if checkpoint:
        # straight onto the device (accelerate's device_map): a 7B model staged on the CPU first
        # would cost minutes of the 10-minute budget
        base = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=dtype, attn_implementation="eager",
                                                    local_files_only=True, device_map={"": str(device)})
    else:
        config = LlamaConfig(
            hidden_size=shape["hidden_size"], intermediate_size=shape["intermediate_size"],
            num_hidden_layers=shape["num_hidden_layers"], num_attention_heads=shape["num_attention_heads"],
            num_key_value_heads=shape["num_attention_heads"], vocab_size=shape["vocab_size"],
            max_position_embeddings=max(4096, shape["sequence_length"]), attn_implementation="eager",
            tie_word_embeddings=False)
        # Initialised directly on the device in the target dtype: 7B float32 weights on the CPU
        # would take minutes and 28 GB just to be thrown away.
        with torch.device(device), _default_dtype(dtype):
            base = LlamaForCausalLM(config)
    for p in base.parameters():
        p.requires_grad_(False)
    model = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"],
                                            lora_dropout=0.0))
    with torch.no_grad():  # a non-zero B, so that the adapter is a generic point (peft zeroes B)
        for name, p in model.named_parameters():
            if p.requires_grad and "lora_B" in name:
                p.normal_(0.0, 1e-3)
    model.eval()
    return model


class LanguageModelLoss:
    """Mean next-token cross-entropy of (B, T) token ids; the batch moves to the model's device.

    Split into outputs (the logits) and the loss of the outputs, for Gauss–Newton curvature.
    """

    def outputs(self, model, batch: torch.Tensor) -> torch.Tensor:
        return model(input_ids=batch.to(next(model.parameters()).device)).logits[:, :-1]

    def loss_of_outputs(self, outputs: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        logits = outputs.float()
        targets = batch.to(logits.device)[:, 1:]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def __call__(self, model, batch: torch.Tensor) -> torch.Tensor:
        return self.loss_of_outputs(self.outputs(model, batch), batch)


language_model_loss = LanguageModelLoss()


def _timed(device: torch.device, function, repeats: int) -> dict[str, float]:
    """Median seconds of ``function()`` over ``repeats`` calls after one warm-up, and the peak memory."""
    from eraserlab.profiling import measure

    function()  # warm-up: kernels, allocator
    seconds, peak, absolute = [], 0.0, 0.0
    for _ in range(repeats):
        with measure(device) as usage:
            function()
        seconds.append(usage.wall_time_s)
        peak = max(peak, usage.peak_memory_mb)
        absolute = max(absolute, _absolute_peak_gib(device))
    seconds.sort()
    return {"seconds": seconds[len(seconds) // 2], "all_seconds": seconds, "peak_memory_mb_above_start": peak,
            "peak_memory_gib_absolute": absolute}


def _absolute_peak_gib(device: torch.device) -> float:
    """Peak allocated CUDA memory since the last reset (``measure`` resets it), weights included:
    the figure comparable with the 52 GiB peak reported for a 7B HVP on an H100. NaN on the CPU."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan


def _relinearised_cost(shape: dict[str, Any], units: dict[str, Any]) -> float:
    """Seconds the re-linearised erase should take: 20 Lanczos iterations on 4 batches and 2 × max_steps GN
    products, b, the gradient over n − k examples, ~4 line-search evaluations of 2B examples and their gradient."""
    batches = math.ceil((shape["train_set"] - shape["request"]) / shape["batch_size"])
    products = 20 * 4 + 2 * shape["relinearised_max_steps"]
    return (products * units["gauss_newton"]["seconds"] + (batches + 4) * units["gradient"]["seconds"]
            + 8 * units["forward"]["seconds"])


def _relinearised_step(model, train_data: list, shape: dict[str, Any], device: torch.device, seed: int,
                       expected_seconds: float) -> dict[str, Any]:
    """erase(curvature="gauss_newton", steps=2) with llmeraser at a fixed step budget; its costs and diagnostics."""
    import eraserlib
    from eraserlab.profiling import measure

    k = shape["request"]
    try:
        with measure(device) as usage:
            result = eraserlib.erase(model, language_model_loss, train_data, eraserlib.InstanceRemoval(train_data[-k:]),
                                     solver="llmeraser", curvature="gauss_newton", steps=2,
                                     step_options={"evaluation_examples": 2 * shape["batch_size"]},
                                     batch_size=shape["batch_size"], compute_dtype=None,
                                     options={"max_steps": shape["relinearised_max_steps"]}, seed=seed,
                                     progress=False)
    except (eraserlib.EraserError, torch.OutOfMemoryError) as error:
        return {"error": f"{type(error).__name__}: {error}"[:500], "expected_seconds": expected_seconds}
    d = result.diagnostics
    return {"seconds": usage.wall_time_s, "expected_seconds": expected_seconds,
            "peak_memory_gib_absolute": _absolute_peak_gib(device),
            "max_steps": shape["relinearised_max_steps"], "steps_taken": d.get("steps_taken"),
            "corrected_objective": d.get("corrected_objective"), "step_lengths": d.get("step_lengths"),
            "step_damping": d.get("step_damping"), "step_stop_reason": d.get("step_stop_reason"),
            "gradient_count": d["gradient_count"], "gauss_newton_count": d["gauss_newton_count"],
            "forward_count": d["forward_count"], "gauss_newton_method": d.get("gauss_newton_method"),
            "damping": d.get("damping")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = reporting.parser("gpu_path", __doc__.splitlines()[0], sizes=("tiny", "llama-7b"))
    arguments.add_argument("--checkpoint", default=None, help="local Hugging Face model folder (overrides the shape)")
    arguments.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    arguments.add_argument("--rank", type=int, default=8)
    arguments.add_argument("--dtype", choices=["auto", "bfloat16", "float32"], default="auto",
                           help="the base model's dtype (auto: bfloat16 on a GPU, float32 on the CPU)")
    arguments.add_argument("--budget-seconds", type=float, default=480.0,
                           help="wall-clock budget of the whole run; the erase's steps are fitted to it")
    arguments.add_argument("--train-examples", type=int, default=10_000,
                           help="n of the realistic request the times are projected for")
    arguments.add_argument("--request-share", type=float, default=0.1, help="k/n of that request")
    arguments.add_argument("--epochs", type=int, default=5, help="epochs of the retrain it is compared with")
    arguments.set_defaults(size=None)
    arguments = arguments.parse_args(argv)
    device = torch.device("cuda" if arguments.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if arguments.device == "auto" else arguments.device))
    if arguments.size is None:
        arguments.size = "llama-7b" if device.type == "cuda" else "tiny"
    reporting.setup_torch(arguments.threads)
    started, machine = time.perf_counter(), reporting.machine()
    shape = SHAPES[arguments.size]
    if arguments.dtype == "auto":  # CPU bf16 matmuls are slow; the GPU path is the paper's bf16
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    else:
        dtype = getattr(torch, arguments.dtype)
    record: dict[str, Any] = {"shape": shape, "device": str(device), "dtype": str(dtype),
                              "checkpoint": arguments.checkpoint, "paper_h100_reference": PAPER_H100}

    from eraserlib.objective import TrainingObjective
    from eraserlab.profiling import measure

    with measure(device) as build:
        model = build_model(shape, device, dtype, arguments.checkpoint, arguments.rank, arguments.seed)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    record["build_seconds"] = build.wall_time_s
    record["trainable_parameters"] = trainable
    record["total_parameters"] = sum(p.numel() for p in model.parameters())
    vocabulary = model.config.vocab_size
    generator = torch.Generator().manual_seed(arguments.seed)
    train_data = [torch.randint(3, vocabulary, (shape["sequence_length"],), generator=generator)
                  for _ in range(shape["train_set"])]
    batch = train_data[:shape["batch_size"]]

    # 1. unit costs, in the model's own dtype (bf16 on the GPU), the HVP as erase runs it with compute_dtype=None
    objective = TrainingObjective(model, language_model_loss, train_data, batch_size=shape["batch_size"],
                                  compute_dtype=None, seed=arguments.seed)
    vector = torch.randn(trainable, generator=generator).to(device)
    with objective.evaluation():
        collated = torch.stack(batch)

        def forward():
            with torch.no_grad():
                language_model_loss(model, collated)

        units = {
            "forward": _timed(device, forward, shape["repeats"]),
            "gradient": _timed(device, lambda: objective.loss_sum_gradient(batch), shape["repeats"]),
            "hvp": _timed(device, lambda: objective.data_hvp(batch, vector), shape["repeats"]),
            # G v = Jᵀ H_out J v (eraserlib.curvature; the library's default way to form J v)
            "gauss_newton": _timed(device, lambda: objective.data_gauss_newton(batch, vector), shape["repeats"]),
        }
    units["hvp_over_gradient"] = units["hvp"]["seconds"] / units["gradient"]["seconds"]
    units["gauss_newton_over_gradient"] = units["gauss_newton"]["seconds"] / units["gradient"]["seconds"]
    units["gauss_newton_method"] = objective.curvature_info().get("gauss_newton_method")
    record["unit_costs"] = units
    record["peak_memory_gib_total"] = max(units[k]["peak_memory_gib_absolute"] for k in ("forward", "gradient", "hvp"))

    # 2. one erase with the time that is left (bf16 HVPs; its Lanczos estimate costs 20 HVPs)
    import eraserlib

    spent = time.perf_counter() - started
    relinearised_cost = _relinearised_cost(shape, units)
    reserve = 4 * units["hvp"]["seconds"] * 2 + 60 if device.type == "cuda" else 0.0  # the fp32 check below
    reserve += relinearised_cost if device.type == "cuda" else 0.0  # the re-linearised step below
    room = arguments.budget_seconds - spent - reserve
    k = shape["request"]
    gradients_for_b = math.ceil(k / shape["batch_size"])
    steps = int((room - gradients_for_b * units["gradient"]["seconds"]) / units["hvp"]["seconds"]) - 20
    steps = max(16, min(shape["max_steps"], steps))
    try:
        with measure(device) as usage:
            result = eraserlib.erase(model, language_model_loss, train_data,
                                     eraserlib.InstanceRemoval(train_data[-k:]), solver="llmeraser",
                                     curvature="hessian", batch_size=shape["batch_size"], compute_dtype=None, options={"max_steps": steps},
                                     seed=arguments.seed, progress=False)
        diagnostics = result.diagnostics
        record["erase"] = {
            "seconds": usage.wall_time_s, "peak_memory_mb_above_start": usage.peak_memory_mb,
            "memory_kind": usage.memory_kind, "max_steps": steps, "steps": diagnostics.get("steps"),
            "stop_reason": diagnostics.get("stop_reason"), "hvp_count": diagnostics["hvp_count"],
            "peak_memory_gib_absolute": _absolute_peak_gib(device),
            "damping": diagnostics.get("damping"), "residual_estimate": diagnostics.get("residual_estimate"),
            "request_size": k, "train_examples": len(train_data),
        }
    except (eraserlib.EraserError, torch.OutOfMemoryError) as error:  # record it and go on: one GPU run only
        diagnostics = {}
        record["erase"] = {"error": f"{type(error).__name__}: {error}"[:500], "max_steps": steps}

    # 2b. one re-linearised erase step with Gauss–Newton curvature (steps=2: the one-step solve, then the gradient
    # of the corrected objective over the n − k examples left, a second solve and a line search)
    record["relinearised_step"] = _relinearised_step(model, train_data, shape, device, arguments.seed,
                                                     relinearised_cost)

    # 3. bf16 vs float32 HVP on the same batch and vector
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the float32 copy needs whole new blocks, not the bf16 ones
    small = train_data[:shape["accuracy_batch"]]
    low = TrainingObjective(model, language_model_loss, small, batch_size=len(small), compute_dtype=None)
    with low.evaluation(), measure(device) as low_usage:
        hvp_low = low.data_hvp(small, vector).double()
    high = TrainingObjective(model, language_model_loss, small, batch_size=len(small), compute_dtype=torch.float32)
    try:
        with measure(device) as high_usage:  # includes converting the base to float32 and back
            with high.evaluation():
                hvp_high = high.data_hvp(small, vector).double()
        record["hvp_precision"] = {
            "model_dtype": str(dtype), "batch": len(small), "model_dtype_hvp_seconds": low_usage.wall_time_s,
            "float32_hvp_seconds_with_conversion": high_usage.wall_time_s,
            "float32_peak_memory_mb_above_start": high_usage.peak_memory_mb,
            "float32_peak_memory_gib_absolute": _absolute_peak_gib(device),
            "relative_difference": float((hvp_low - hvp_high).norm() / hvp_high.norm()),
            "cosine": float(torch.nn.functional.cosine_similarity(hvp_low, hvp_high, dim=0)),
            "note": "the model's dtype vs float32 (0 when the model is float32 already)",
        }
    except torch.OutOfMemoryError as error:  # a float32 copy of a 7B model needs ~28 GB more
        record["hvp_precision"] = {"error": f"out of memory: {error}"[:300]}
    # 4. projection to a realistic request
    n, B = arguments.train_examples, shape["batch_size"]
    k_real = max(1, round(arguments.request_share * n))
    steps_needed = diagnostics.get("steps") or steps
    gradient_s, hvp_s = units["gradient"]["seconds"], units["hvp"]["seconds"]
    retrain_s = arguments.epochs * math.ceil(n / B) * gradient_s
    projection = {"train_examples": n, "request_examples": k_real, "epochs": arguments.epochs, "batch_size": B,
                  "solver_steps": steps_needed, "retrain_seconds": retrain_s}
    for kind, passes in (("instance_removal", 1), ("query_modification_or_response_correction", 2)):
        erase_s = passes * math.ceil(k_real / B) * gradient_s + (20 + steps_needed) * hvp_s
        projection[kind] = {"erase_seconds": erase_s, "retrain_over_erase": retrain_s / erase_s}
    record["projection"] = projection

    path = reporting.write_record(arguments, record, started, machine)
    rows = [{"quantity": f"{name} s", "measured": units[name]["seconds"],
             "paper H100": PAPER_H100.get(f"{name}_s")} for name in ("forward", "gradient", "hvp")]
    rows.append({"quantity": "HVP / gradient", "measured": units["hvp_over_gradient"], "paper H100": 2.8})
    rows.append({"quantity": "peak memory GiB (unit costs)", "measured": record.get("peak_memory_gib_total"),
                 "paper H100": PAPER_H100["peak_gib"]})
    rows.append({"quantity": "Gauss-Newton product s", "measured": units["gauss_newton"]["seconds"]})
    rows.append({"quantity": "Gauss-Newton / gradient", "measured": units["gauss_newton_over_gradient"]})
    rows.append({"quantity": f"erase ({steps_needed} steps) s", "measured": record["erase"].get("seconds")})
    rows.append({"quantity": "GN erase, 2 re-linearised steps s",
                 "measured": record["relinearised_step"].get("seconds")})
    rows.append({"quantity": "bf16 vs fp32 HVP rel. diff", "measured": record["hvp_precision"].get("relative_difference")})
    rows.append({"quantity": f"retrain (n={n}, {arguments.epochs} ep.) s, projected", "measured": retrain_s})
    for kind in ("instance_removal", "query_modification_or_response_correction"):
        rows.append({"quantity": f"erase {kind} s, projected", "measured": projection[kind]["erase_seconds"]})
        rows.append({"quantity": f"retrain / erase ({kind})", "measured": projection[kind]["retrain_over_erase"]})
    print(f"{arguments.size} on {device} ({machine['gpu'] or machine['cpu']}), {trainable} trainable parameters")
    print(reporting.format_table(rows, ["quantity", "measured", "paper H100"]))
    print(f"wrote {path} in {time.perf_counter() - started:.0f} s")
    return {"path": path, "record": record}


if __name__ == "__main__":
    main()
