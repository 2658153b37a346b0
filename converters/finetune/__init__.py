"""`edgeai finetune`: LoRA, DoRA, QLoRA and full fine-tuning in MLX on mlx-lm's trainer, resumable,
with the tuned model exported through the converters. `train.finetune(options, settings)` runs
one; docs/finetune-design.md maps the modules (data, batches, plan, base, checkpoint, train,
export, evaluate) and their interfaces. Nothing here imports mlx at import time."""
