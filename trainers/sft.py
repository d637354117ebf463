"""Supervised fine-tuning of a reranker or reasoner over TRL's ``SFTTrainer``.

Each of the task's examples becomes a prompt-completion pair: the task's prompt and its target (the
teacher's answer from ``rankrl synth``, or one built from the labels; listwise: ``<think>reasoning</think>
<answer>[3] > [1] > ...</answer>``). TRL computes the loss on the completion tokens only.

    rankrl train recipes/demo/sft.yaml
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m trainers.sft RECIPE.yaml key=value
"""

from __future__ import annotations

from datasets import Dataset
from trl import ModelConfig, SFTConfig, SFTTrainer

from tasks import Task
from trainers.configs import ScriptArguments
from trainers.pipeline import policy, run_cli, setup, train_and_save


def sft_dataset(task: Task, examples: Dataset) -> Dataset:
    """TRL's prompt-completion rows: the task's prompt and target of every example."""
    return examples.map(
        lambda example: {
            "prompt": task.prompt(example),
            "completion": [{"role": "assistant", "content": task.target(example)}],
        },
        remove_columns=examples.column_names,
    )


def main(script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> SFTTrainer:
    """Fine-tune ``model_args.model_name_or_path`` on the recipe's data and save it to ``output_dir``."""
    task, examples = setup(script_args, training_args)
    trainer = SFTTrainer(
        args=training_args,
        train_dataset=sft_dataset(task, examples),
        **policy(model_args),
    )
    train_and_save(trainer, script_args, task)
    return trainer


if __name__ == "__main__":
    run_cli(main, SFTConfig)
