"""eraserlib: influence-based unlearning for LoRA adapters."""
