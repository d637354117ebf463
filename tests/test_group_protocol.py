"""The group-aware reward protocol in real GRPO runs of the tiny model.

- In one process: group rewards get TRL's groups as explicit ids, ``group_by_query`` batches hold whole
  queries, and the values equal the rewards recomputed here on the recorded batch.
- In two processes (``accelerate launch``, gloo), with 3 prompts x 2 generations per step, so a group and a
  query span both processes: each process computed the same values for the whole gathered batch, equal
  to the single-process values recomputed here, and TRL's logged mean equals their mean.
- The policy sampler draws K samples per (prompt, prefix) from the policy, and MRT's progress bonus runs
  inside a GRPO step with it, in one process and in two.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, ModelConfig

from core.models import load_tokenizer
from core.recipe import apply_overrides, read_yaml
from rankrl.smoke import prepare_toy_workspace
from rewards import get_reward
from rewards.consensus import group_consensus_reward
from rewards.groups import consecutive_group_ids
from tasks import get_task
from tests.recording_rewards import as_answers, length_rank
from tests.test_multiprocess import EXTENSIONS_DIR, _env, _train, _yaml
from trainers import grpo
from trainers.configs import build_stage_configs
from trainers.policy_sampler import PolicySampler
from trainers.trl_overrides import QueryGroupedRepeatSampler, RankRLGRPOTrainer

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "demo" / "grpo.yaml"
DOCS_PER_QUERY, G = 3, 2
REWARDS = [
    {"name": "tests.recording_rewards:recorded_consensus"},
    {"name": "tests.recording_rewards:recorded_length_rank"},
    {"name": "tests.recording_rewards:progress_bonus", "weight": 0.0},  # the policy sampler in 2 processes
]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    task = get_task("listwise", use_system_prompt=True, answer_mode="partial")
    space = prepare_toy_workspace(tmp_path_factory.mktemp("toy"), task, num_train=64, num_heldout=8)
    rows = [json.loads(line) for line in Path(space.train_path).read_text().splitlines()][:63]
    grouped = Path(space.train_path).with_name("grouped.jsonl")
    grouped.write_text(
        "".join(json.dumps({**row, "query_id": f"q{i // 3}"}) + "\n" for i, row in enumerate(rows))
    )
    return space, grouped


def _overrides(workspace, output_dir: Path, per_device_batch: int) -> dict:
    space, grouped = workspace
    return {
        "model_name_or_path": str(space.model_dir),
        "dataset": str(grouped),
        "eval_dataset": None,
        "output_dir": str(output_dir),
        "max_steps": 2,
        "per_device_train_batch_size": per_device_batch,
        "num_generations": G,
        "max_completion_length": 24,
        "temperature": 1.0,
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "save_strategy": "no",
        "rich_progress": False,
        "logging_steps": 1,
        "resume": False,
        "group_by_query": True,
        "rewards": REWARDS,
    }


def _records(folder: Path) -> dict[str, list[dict]]:
    return {
        path.stem: [json.loads(line) for line in path.read_text().splitlines()]
        for path in folder.glob("*.jsonl")
    }


def _check_batch(entry: dict) -> list[float]:
    """The recorded batch is laid out as TRL's groups, holds whole queries; returns the recomputed values."""
    size = len(entry["completions"])
    assert entry["group_ids"] == consecutive_group_ids(size, G)
    counts = {query: entry["query_id"].count(query) for query in entry["query_id"]}
    assert set(counts.values()) == {DOCS_PER_QUERY * G}, counts
    if entry["reward"] == "recorded_consensus":
        columns = {"group_ids": consecutive_group_ids(size, G), "candidates": entry["candidates"]}
        return group_consensus_reward(as_answers(entry["completions"]), mode="lenient", **columns)
    return length_rank(entry["completions"], entry["query_id"])


def test_single_process_groups_and_queries(workspace, tmp_path, monkeypatch):
    monkeypatch.setenv("RANKRL_RECORD_DIR", str(tmp_path))
    config = apply_overrides({**read_yaml(RECIPE), **_overrides(workspace, tmp_path / "out", 6)}, [])
    trainer = grpo.main(*build_stage_configs(config, "grpo.yaml"))
    assert isinstance(trainer._get_train_sampler(), QueryGroupedRepeatSampler)
    entries = _records(tmp_path)["rank0"]
    assert len(entries) == 4  # two rewards x two steps
    for entry in entries:
        assert entry["values"] == pytest.approx(_check_batch(entry))
    assert len({value for entry in entries for value in entry["values"]}) > 2  # not a constant reward


@pytest.mark.multiprocess
def test_two_processes_score_groups_as_one_process(workspace, tmp_path):
    env = {**_env(EXTENSIONS_DIR), "RANKRL_RECORD_DIR": str(tmp_path)}
    values = {**_overrides(workspace, tmp_path / "out", 3), "save_strategy": "steps", "save_steps": 2}
    rewards = values.pop("rewards")
    overrides = [f"{key}={_yaml(value)}" for key, value in values.items()] + [
        f"rewards={json.dumps(rewards)}"
    ]
    output = _train("grpo", overrides, env, "cpu_ddp2")
    records = _records(tmp_path)
    assert set(records) == {"rank0", "rank1"}, output[-2000:]
    for first, second in zip(records["rank0"], records["rank1"], strict=True):
        assert first == second  # both processes scored the same gathered batch
        assert len(first["completions"]) == 3 * G  # 3 prompts: the middle group spans the two processes
        assert first["values"] == pytest.approx(_check_batch(first))
    # TRL gathered the two processes' slices: its logged mean per step is the mean over the whole batch.
    state = json.loads((tmp_path / "out" / "checkpoint-2" / "trainer_state.json").read_text())
    for entry in records["rank0"]:
        logged = next(log for log in state["log_history"] if log.get("step") == entry["step"] + 1)
        assert logged[f"rewards/{entry['reward']}/mean"] == pytest.approx(np.mean(entry["values"]), rel=1e-5)
        # MRT's meta-prover sampled from the policy on both processes; its bonus telescopes.
        assert logged["mrt/bonus"] == pytest.approx(logged["mrt/J_last"] - logged["mrt/J_first"], abs=1e-6)


def test_query_grouped_sampler_keeps_the_common_query_size_and_counts_the_rest(caplog):
    # Queries a, c have 2 rows, b has 1, d has 3: a and c fill batches of 2; b and d are left out, counted.
    query_ids = ["a", "a", "b", "c", "c", "d", "d", "d"]
    options = {"mini_repeat_count": 1, "batch_size": 2, "shuffle": False}
    with caplog.at_level("WARNING"):
        sampler = QueryGroupedRepeatSampler(list(range(8)), query_ids, **options)
    assert list(sampler) == [0, 1, 3, 4]
    assert "2 of 4 queries do not have 2 rows (found [1, 2, 3])" in caplog.text
    with pytest.raises(ValueError, match=r"divides the 4 prompts.*found queries with \[3\] rows"):
        QueryGroupedRepeatSampler(list(range(6)), ["a"] * 3 + ["b"] * 3, mini_repeat_count=2, batch_size=4)


@pytest.fixture(scope="module")
def math_trainer(workspace, tmp_path_factory):
    space, _ = workspace
    rows = [
        {"prompt": [{"role": "user", "content": f"{a} plus {a}"}], "answer": str(2 * a)} for a in range(8)
    ]
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("mrt")),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=G,
        max_completion_length=12,
        use_cpu=True,
        bf16=False,
        report_to="none",
        logging_steps=1,
        gradient_checkpointing=False,
        save_strategy="no",
    )
    reward = get_reward("mrt_progress", num_samples=3, max_new_tokens=4, group_size=1, min_gap=1)
    return RankRLGRPOTrainer(
        model=str(space.model_dir),
        reward_funcs=[get_reward("answer_match"), reward],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(ModelConfig(model_name_or_path=str(space.model_dir))),
    )


def test_policy_sampler_draws_k_samples_from_the_rendered_prompt(math_trainer):
    sampler = PolicySampler(math_trainer)
    prompts = [[{"role": "user", "content": "1 plus 1"}], [{"role": "user", "content": "2 plus 2"}]]
    torch.manual_seed(0)
    samples = sampler(prompts, ["", "so"], num_samples=3, temperature=1.0, top_p=1.0, max_new_tokens=6)
    assert [len(group) for group in samples] == [3, 3]
    assert len({text for group in samples for text in group}) > 1  # sampled, not greedy
    # The same draw by hand: chat template with the generation prompt, then the prefix, left-padded batch.
    tokenizer = math_trainer.processing_class
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    batch = tokenizer(
        [texts[0], texts[1] + "so"],
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=False,
    )
    torch.manual_seed(0)
    generated = math_trainer.model.generate(
        **batch, do_sample=True, num_return_sequences=3, max_new_tokens=6, temperature=1.0, top_p=1.0,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    expected = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert [text for group in samples for text in group] == expected


def test_mrt_progress_runs_inside_a_grpo_step(math_trainer):
    math_trainer.train()
    logs = next(entry for entry in math_trainer.state.log_history if "mrt/bonus" in entry)
    assert logs["mrt/bonus"] == pytest.approx(logs["mrt/J_last"] - logs["mrt/J_first"])  # telescoping
    for key in ("mrt/J_first", "mrt/J_last"):
        assert 0.0 <= logs[key] <= 1.0 and (logs[key] * 3 * 4).is_integer()  # K = 3 samples, 4 completions
    assert logs["mrt/episodes"] >= 1 and "rewards/mrt_progress/mean" in logs
