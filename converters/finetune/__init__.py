"""Fine-tuning in MLX (`edgeai finetune`); docs/finetune-design.md has the modules and their boundaries."""
