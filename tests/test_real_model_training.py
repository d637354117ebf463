"""SFT-LoRA then GRPO-LoRA on SmolLM2-135M-Instruct, a real pretrained model, for three tasks on real data.

For each of the listwise, yes/no and math tasks, four real examples (TREC DL19 queries with their BM25
top 3 passages cut to 40 words, or their (query, passage) pairs; GSM8K test problems with short worked
answers) train one LoRA adapter with SFT, then a second with GRPO starting from the first (the chain
``rankrl train`` runs), through ``trainers.sft.main`` and ``trainers.grpo.main`` as a recipe drives them.
What tiny test models cannot show:

- SFT's loss covers each target up to and including SmolLM2's end token ``<|im_end|>`` (what teaches the
  model to stop), the trained adapter is saved with non-zero ``lora_B`` and, loaded back through
  ``core.models``, the model's greedy answers stop at ``<|im_end|>`` before the token limit;
- GRPO rolls out with ``<|im_end|>`` as its end token and counts the completions that end there as
  terminated (``completions/clipped_ratio`` below 1); the task's reward is logged, and
  ``tests.recording_rewards:text_length`` makes a group's rewards differ so that the policy gradient is
  non-zero (GRPO's advantage is the reward minus the group mean, arXiv 2402.03300 §4.1): the fresh adapter
  moves.

Each real-model step takes seconds on a CPU core, so every run is two steps of two completions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset
from safetensors.torch import load_file
from trl import ModelConfig

from core.data import write_dataset
from core.generation import HFBackend, Sampling
from core.models import load_model, load_tokenizer
from core.recipe import apply_overrides, read_yaml
from core.sources import read_qrels_file, read_rankllm_requests
from rankrl.smoke import ToyWorkspace, smoke_overrides
from tasks import expand_rows, get_task
from trainers import grpo, sft
from trainers.configs import build_stage_configs

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared/data/real"
DL19 = REAL / "trec-dl19"
GSM8K = REAL / "gsm8k/gsm8k.test.jsonl"
PASSAGES, PASSAGE_WORDS = 3, 40
SETTINGS = {  # task -> (task_args, greedy tokens an SFT answer must end within, GRPO completion tokens)
    "listwise": ({"list_size": PASSAGES, "max_passage_words": PASSAGE_WORDS}, 80, 96),
    "yesno": ({"max_passage_words": PASSAGE_WORDS}, 32, 48),
    "math": ({}, 96, 64),
}
LORA = {"use_peft": True, "lora_r": 4, "lora_alpha": 8, "max_steps": 2, "per_device_train_batch_size": 2}
SFT_LEARNING_RATE = 1e-3  # two steps at 1e-2 and above break a 135M model into endless tag loops
GRPO_LEARNING_RATE = 1e-3
# At 1.0 a 135M model's samples ramble past any short budget (0 of 4 ended within 32 tokens on yes/no).
GRPO_TEMPERATURE = 0.5
# One rollout of all 4 prompts x 2 completions feeds both optimizer steps (of one prompt each): whether a
# completion ends within the budget depends mostly on the prompt, so every prompt is sampled.
GENERATION_BATCH = 8
pytestmark = pytest.mark.slow


def _dl19_rows(count: int) -> list[dict[str, Any]]:
    """The first ``count`` DL19 queries whose BM25 top ``PASSAGES`` hold a relevant and a non-relevant
    passage, cut to those passages."""
    if not DL19.is_dir():
        pytest.skip(f"real TREC DL19 data not found at {DL19} (see shared/data/real/README.md)")
    qrels = read_qrels_file(DL19 / "qrels.dl19-passage.txt")
    rows = []
    for row in read_rankllm_requests(DL19 / "rankllm.bm25.dl19.top100.candidates.json", qrels):
        top = row["candidates"][:PASSAGES]
        grades = [qrels[row["query_id"]].get(candidate["doc_id"], 0) for candidate in top]
        if max(grades) > 0 and min(grades) <= 0:
            kept = {candidate["doc_id"] for candidate in top}
            labels = [label for label in row["labels"] if label["doc_id"] in kept]
            rows.append({**row, "candidates": top, "labels": labels})
    return rows[:count]


def _gsm8k_rows(count: int, max_answer_chars: int = 130) -> list[dict[str, str]]:
    """The first ``count`` GSM8K test problems with a short worked answer (short SFT targets)."""
    if not GSM8K.is_file():
        pytest.skip(f"real GSM8K data not found at {GSM8K} (see shared/data/real/README.md)")
    problems = map(json.loads, GSM8K.read_text(encoding="utf-8").splitlines())
    rows = [{"problem": p["question"], "answer": p["answer"]} for p in problems]
    return [row for row in rows if len(row["answer"]) <= max_answer_chars][:count]


def _run(stage: str, name: str, model: str | Path, folder: Path, **overrides: Any) -> Any:
    """One stage of the demo recipe switched to the task, ``model`` and ``folder/train.jsonl``, with LoRA;
    its output goes to ``folder/STAGE``."""
    workspace = ToyWorkspace(Path(model), folder / "train.jsonl", folder / "train.jsonl")
    recipe = read_yaml(ROOT / "recipes/demo" / f"{stage}.yaml")
    config = {**recipe, **smoke_overrides(stage, workspace, folder / stage), **LORA}
    config.update(task=name, task_args=SETTINGS[name][0], eval_dataset=None, rich_progress=False)
    config.update(model_name_or_path=str(model), **overrides)
    main = sft.main if stage == "sft" else grpo.main
    return main(*build_stage_configs(apply_overrides(config, []), f"{stage}.yaml"))


@pytest.fixture(scope="module", params=list(SETTINGS))
def trained(request, smollm2_checkpoint, tmp_path_factory) -> dict[str, Any]:
    """SFT-LoRA from the imported checkpoint, then GRPO-LoRA from the SFT adapter, on the task's real rows
    (four examples: yes/no makes a positive and a negative pair of each of two queries)."""
    name = request.param
    task = get_task(name, **SETTINGS[name][0])
    rows = _gsm8k_rows(4) if name == "math" else _dl19_rows(2 if name == "yesno" else 4)
    folder = tmp_path_factory.mktemp(name)
    write_dataset(rows, folder / "train.jsonl", kind=task.row_kind)
    sft_trainer = _run("sft", name, smollm2_checkpoint, folder, learning_rate=SFT_LEARNING_RATE)
    rewards = [*task.default_rewards, "tests.recording_rewards:text_length"]
    grpo_trainer = _run(
        "grpo", name, folder / "sft", folder, learning_rate=GRPO_LEARNING_RATE, rewards=rewards,
        temperature=GRPO_TEMPERATURE, max_completion_length=SETTINGS[name][2],
        generation_batch_size=GENERATION_BATCH,
    )  # fmt: skip
    return {
        "name": name,
        "task": task,
        "rows": rows,
        "folder": folder,
        "sft": sft_trainer,
        "grpo": grpo_trainer,
    }


def _lora_b(adapter: Path) -> list:
    weights = load_file(adapter / "adapter_model.safetensors")
    return [tensor for key, tensor in weights.items() if "lora_B" in key]


def test_sft_trains_on_targets_that_end_with_the_end_token(trained):
    task, trainer = trained["task"], trained["sft"]
    tokenizer = trainer.processing_class
    examples, _ = expand_rows(task, trained["rows"])
    labelled = [[token for token in row["labels"] if token != -100] for row in trainer.train_dataset]
    # The loss covers the target, SmolLM2's end token and the newline its template puts after every turn.
    expected = sorted(task.target(example) + "<|im_end|>\n" for example in examples)
    assert sorted(tokenizer.decode(tokens) for tokens in labelled) == expected
    assert all(tokens.count(tokenizer.eos_token_id) == 1 for tokens in labelled)
    lora_b = _lora_b(trained["folder"] / "sft")
    assert len(lora_b) == 2 * 30 and all(tensor.abs().sum() > 0 for tensor in lora_b)  # q/v of 30 layers


def test_the_sft_model_stops_its_answers_at_the_end_token(trained):
    name, task = trained["name"], trained["task"]
    args = ModelConfig(model_name_or_path=str(trained["folder"] / "sft"), dtype="float32")
    model, tokenizer = load_model(args), load_tokenizer(args)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == 2
    examples, _ = expand_rows(task, trained["rows"])
    limit = SETTINGS[name][1]
    answers = HFBackend(model, tokenizer).generate(
        [task.prompt(example) for example in examples], Sampling(max_new_tokens=limit, logprobs=True)
    )
    ended = [a.token_texts[-1] == "<|im_end|>" and a.num_tokens < limit for [a] in answers]
    assert any(ended), [a.text for [a] in answers]


def test_grpo_moves_a_fresh_adapter_and_its_rollouts_end_at_the_end_token(trained):
    folder, trainer = trained["folder"], trained["grpo"]
    config = json.loads((folder / "grpo" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((folder / "grpo" / "base").resolve())  # SFT merged in
    lora_b = _lora_b(folder / "grpo")
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b)  # PEFT starts lora_B at zero
    assert trainer.eos_token_ids == [2] and trainer.generation_config.eos_token_id == [2]  # <|im_end|>
    history = trainer.state.log_history
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2]
    [rollout] = [entry for entry in history if "completions/clipped_ratio" in entry]
    first = trained["task"].default_rewards[0]
    assert f"rewards/{first if isinstance(first, str) else first['name']}/mean" in rollout
    assert rollout["rewards/text_length/std"] > 0
    assert rollout["completions/clipped_ratio"] < 1, rollout  # some completion ended at <|im_end|>
    assert 0 < rollout["completions/min_terminated_length"] < SETTINGS[trained["name"]][2]


def test_grpo_warns_when_the_completion_budget_cuts_every_answer_before_it_ends(smollm2_checkpoint, caplog):
    """SmolLM2 spells the yes/no target's empty think block in 8 tokens, so 8 completion tokens never reach
    the answer: the warning says so before any rollout, and a budget that fits the answer stays silent."""
    task = get_task("yesno", template="qwen3_reranker", max_passage_words=PASSAGE_WORDS)
    examples = Dataset.from_list(expand_rows(task, _dl19_rows(4))[0])
    tokenizer = load_tokenizer(ModelConfig(model_name_or_path=str(smollm2_checkpoint)))
    with caplog.at_level(logging.WARNING, logger="rankrl"):
        assert grpo.warn_if_targets_are_cut(task, examples, tokenizer, max_tokens=8)
        assert not grpo.warn_if_targets_are_cut(task, examples, tokenizer, max_tokens=16)
    assert [record.getMessage()[:30] for record in caplog.records] == ["max_completion_length 8 is sho"]
