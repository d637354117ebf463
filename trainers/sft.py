"""Supervised fine-tuning of a reranker or reasoner over TRL's ``SFTTrainer``.

Each of the task's examples becomes a prompt-completion pair: the task's prompt and its target (the
teacher's answer from ``rankrl synth``, or one built from the labels; listwise: ``<think>reasoning</think>
<answer>[3] > [1] > ...</answer>``). TRL computes the loss on the completion tokens only: cross-entropy, or
with ``dco_n`` the confidence-limited DCO loss −log(1 − (1 − p̂)^N) (arXiv 2502.07154; :mod:`trainers.dco`).

    rankrl train recipes/demo/sft.yaml
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m trainers.sft RECIPE.yaml key=value
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset
from trl import ModelConfig, SFTConfig

from core.recipe import described
from tasks import Task
from trainers.configs import ScriptArguments
from trainers.dco import GRANULARITIES
from trainers.pipeline import policy, run_cli, setup, train_and_save
from trainers.trl_overrides import RankRLSFTTrainer


@dataclass
class RankRLSFTConfig(SFTConfig):
    """TRL's ``SFTConfig`` plus the SFT stage's own keys."""

    dco_n: int | None = described(
        "DCO (Chen et al. 2025, arXiv 2502.07154): train on -log(1 - (1 - p)^N), minus the log of the chance "
        "that N samples include the target, instead of cross-entropy; its gradient is cross-entropy's times "
        "F = N p (1-p)^(N-1) / (1 - (1-p)^N), which stops raising confidence once p > ~1/N. Pick N near the "
        "pass@N used at test time; 1 is cross-entropy. None: TRL's loss_type."
    )
    dco_granularity: str = described(
        "DCO's p: 'sequence' (the paper's: the completion's probability, the product of its tokens') or "
        "'token' (rankrl's variant: each completion token's probability, averaged over tokens like "
        "cross-entropy).",
        "sequence",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dco_n is not None and self.dco_n < 1:
            raise ValueError(f"dco_n is {self.dco_n}; expected N >= 1 (or None for cross-entropy)")
        if self.dco_granularity not in GRANULARITIES:
            raise ValueError(
                f"dco_granularity is {self.dco_granularity!r}; expected one of {', '.join(GRANULARITIES)}"
            )


def sft_dataset(task: Task, examples: Dataset) -> Dataset:
    """TRL's prompt-completion rows: the task's prompt and target of every example.

    Built from a list: ``Dataset.map`` formats and writes the rows one at a time, which took longer than the
    rendering itself (5.6 s against 2.4 s for the demo's 25,600 examples).
    """
    rows = examples.to_list()
    prompts = [task.prompt(example) for example in rows]
    completions = [[{"role": "assistant", "content": task.target(example)}] for example in rows]
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def main(
    script_args: ScriptArguments, training_args: RankRLSFTConfig, model_args: ModelConfig
) -> RankRLSFTTrainer:
    """Fine-tune ``model_args.model_name_or_path`` on the recipe's data and save it to ``output_dir``."""
    task, examples = setup(script_args, training_args)
    trainer = RankRLSFTTrainer(
        args=training_args,
        train_dataset=sft_dataset(task, examples),
        dco_n=training_args.dco_n,
        dco_granularity=training_args.dco_granularity,
        **policy(model_args),
    )
    train_and_save(trainer, script_args, task)
    return trainer


if __name__ == "__main__":
    run_cli(main, RankRLSFTConfig)
