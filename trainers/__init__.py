"""rankrl trainers: SFT and GRPO entry points, configs, CLI, evaluation."""
