"""Supervised fine-tuning of a reranker or reasoner over TRL's ``SFTTrainer``.

Each of the task's examples becomes a prompt-completion pair: the task's prompt and its target (the
teacher's answer from ``rankrl synth``, or one built from the labels; listwise: ``<think>reasoning</think>
<answer>[3] > [1] > ...</answer>``). TRL computes the loss on the completion tokens only.

    rankrl train recipes/demo/sft.yaml
    accelerate launch --config_file recipes/accelerate/ddp.yaml -m trainers.sft RECIPE.yaml key=value
"""

from __future__ import annotations

from trl import ModelConfig, SFTConfig, SFTTrainer

from trainers.configs import ScriptArguments
from trainers.pipeline import policy, run_cli, setup, train_and_save


def main(script_args: ScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> SFTTrainer:
    """Fine-tune ``model_args.model_name_or_path`` on the recipe's data and save it to ``output_dir``."""
    task, rows = setup(script_args, training_args)
    dataset = rows.map(
        lambda row: {
            "prompt": task.prompt(row),
            "completion": [{"role": "assistant", "content": task.target(row)}],
        },
        remove_columns=rows.column_names,
    )
    trainer = SFTTrainer(
        args=training_args,
        train_dataset=dataset,
        **policy(model_args),
    )
    train_and_save(trainer, script_args, task)
    return trainer


if __name__ == "__main__":
    run_cli(main, SFTConfig)
