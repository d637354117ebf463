"""Contract tests: the TRL internals that the ``trainers/trl_overrides`` package relies on (every other module
reaches TRL's internals through it), pinned against the installed TRL. A failure here means TRL changed
underneath: read the failing assertion, then update the override package (not these tests) after checking the
new TRL code. DCO's hold on SFTTrainer's loss is pinned in ``tests/test_trl_contract_sft.py``.

The helpers that other modules call are pinned by behaviour, on real trainers of a tiny model: a one-step
GRPO run and a one-step SFT run (metrics and token counts as TRL logs them), direct calls on the GRPO
trainer (prompt rendering, the policy for generation), and a GRPO trainer with ``use_vllm`` whose engine is
TRL's own ``VLLMGeneration`` over a stand-in for vLLM's ``LLM`` (vLLM needs CUDA).
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from packaging.specifiers import SpecifierSet
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer
from trl.generation import vllm_generation
from trl.trainer.utils import RepeatSampler

from tests.trl_contract_setup import ONE_CPU_STEP, PROMPTS, tiny_contract_model
from trainers.policy_sampler import PolicySampler
from trainers.trl_overrides import (
    EpochSeededRepeatSampler,
    QueryGroupedRepeatSampler,
    RankRLGRPOTrainer,
    log_metric,
    policy_for_generation,
    render_prompt,
    tokens_seen,
)
from trainers.trl_overrides.grpo_trainer import TRAINER_KWARGS
from trainers.trl_overrides.internals import VLLM_SETTINGS

PINNED_TRL = SpecifierSet(">=1.16,<1.17")  # pyproject.toml's range
PROBE = "contract/probe"  # logged twice per step (1.0 and 3.0) through log_metric


class MetricProbe(TrainerCallback):
    """Logs 1.0 and 3.0 under :data:`PROBE` through :func:`log_metric` at the end of every step."""

    def __init__(self, trainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs) -> None:
        for value in (1.0, 3.0):
            log_metric(self.trainer, "train", PROBE, value)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_contract_model(tmp_path_factory.mktemp("tiny"))


def _grpo_args(output_dir, **overrides) -> GRPOConfig:
    return GRPOConfig(
        output_dir=str(output_dir), num_generations=2, max_completion_length=8, **ONE_CPU_STEP, **overrides
    )


def _length_reward(completions, **columns) -> list[float]:
    return [float(len(completion[0]["content"])) for completion in completions]


@pytest.fixture(scope="module")
def grpo_trainer(tiny_model, tmp_path_factory):
    """rankrl's GRPO trainer after one logged step, with :class:`MetricProbe`."""
    trainer = RankRLGRPOTrainer(
        model=tiny_model,
        reward_funcs=[_length_reward],
        args=_grpo_args(tmp_path_factory.mktemp("grpo")),
        train_dataset=Dataset.from_list([{"prompt": prompt} for prompt in PROMPTS]),
    )
    trainer.add_callback(MetricProbe(trainer))
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def sft_trainer(tiny_model, tmp_path_factory):
    """TRL's SFT trainer after one logged step, with :class:`MetricProbe`."""
    rows = [
        {"prompt": prompt, "completion": [{"role": "assistant", "content": "[1] > [2]"}]}
        for prompt in PROMPTS
    ]
    args = SFTConfig(output_dir=str(tmp_path_factory.mktemp("sft")), **ONE_CPU_STEP)
    trainer = SFTTrainer(model=tiny_model, args=args, train_dataset=Dataset.from_list(rows))
    trainer.add_callback(MetricProbe(trainer))
    trainer.train()
    return trainer


def _source(function) -> str:
    return inspect.getsource(function)


def _parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_installed_trl_is_the_pinned_version():
    assert version("trl") in PINNED_TRL


def test_rewards_are_called_on_the_process_slice_with_these_keywords():
    assert _parameters(GRPOTrainer._calculate_rewards) == [
        "self", "inputs", "prompts", "completions", "completion_ids_list"
    ]  # fmt: skip
    source = _source(GRPOTrainer._calculate_rewards)
    call = "prompts=prompts, completions=completions, completion_ids=completion_ids_list, **reward_kwargs"
    assert source.count(call) == 2  # the sync and the async path
    # Every keyword TRL adds besides the dataset columns is one GatheredReward passes through ungathered.
    assert set(re.findall(r'(?<!\w)reward_kwargs\["(\w+)"\]', source)) == set(TRAINER_KWARGS)
    # The per-process rewards are gathered after the reward functions ran: the input is the local slice.
    assert source.index("reward_func(") < source.index("gather(rewards_per_func)")


def test_generate_returns_completion_ids_second():
    source = _source(GRPOTrainer._generate_and_score_completions)
    assert re.search(
        r"\(\s*prompt_ids_list,\s*completion_ids_list,[^)]*\) = self\._generate\(prompts\)", source
    )
    assert "self._calculate_rewards(inputs, prompts, completions, completion_ids_list)" in source
    assert 'mode = "train" if self.model.training else "eval"' in source
    assert (
        'num_generations = self.num_generations if mode == "train" else self.num_generations_eval' in source
    )


def test_advantages_leave_generate_and_score_once_scored_and_the_loss_takes_per_token_ones():
    source = _source(GRPOTrainer._generate_and_score_completions)
    assert source.count("self._calculate_rewards(") == 1  # RankRLGRPOTrainer.scored_batch reads that result
    # ScoredBatch.rewards is TRL's summed reward: the weights times each reward, NaN-summed per completion.
    assert (
        "rewards = (rewards_per_func * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1)" in source
    )
    assert '"advantages": advantages,' in source and '"completion_ids": completion_ids,' in source
    assert source.rstrip().endswith("return output")  # nothing logs the advantages after it returns
    assert 'self._logs["advantages"].extend(all_process_advantages.tolist())' in source
    loss = _source(GRPOTrainer._compute_loss)
    assert "if advantages.dim() == 1:\n            advantages = advantages.unsqueeze(1)" in loss


class AdvantageProbe:
    """An ``advantage_fn`` that records its batches and returns A[i, t] = (sum of ids_i) mod 7 + t / 10."""

    def __init__(self) -> None:
        self.batches = []

    @staticmethod
    def row(ids, width: int) -> list[float]:
        return [float(sum(ids) % 7) + t / 10 for t in range(width)]

    def __call__(self, batch) -> torch.Tensor:
        self.batches.append(batch)
        return torch.tensor([self.row(ids, batch.width) for ids in batch.completion_ids])


def test_advantage_fn_sees_trls_rewards_and_its_per_token_advantages_reach_the_loss(tiny_model, tmp_path):
    probe, seen = AdvantageProbe(), []
    rows = [{"prompt": prompt, "answer": str(i)} for i, prompt in enumerate(PROMPTS)]
    trainer = RankRLGRPOTrainer(
        model=tiny_model,
        reward_funcs=[_length_reward],
        args=_grpo_args(tmp_path),
        train_dataset=Dataset.from_list(rows),
        advantage_fn=probe,
    )
    compute_loss = trainer.compute_loss

    def recording(model, inputs, *args, **kwargs):
        seen.append({key: inputs[key] for key in ("completion_ids", "completion_mask", "advantages")})
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = recording
    trainer.train()
    [batch] = probe.batches
    assert batch.rewards.tolist() == [float(len(text)) for text in batch.completions]  # one reward, weight 1
    logged = next(entry for entry in trainer.state.log_history if "reward" in entry)
    assert batch.rewards.mean().item() == pytest.approx(logged["reward"])
    tokenizer = trainer.processing_class
    assert batch.completions == tokenizer.batch_decode(batch.completion_ids, skip_special_tokens=True)
    assert all(
        prompt == PROMPTS[int(answer)]
        for prompt, answer in zip(batch.prompts, batch.columns["answer"], strict=True)
    )
    assert batch.width == max(len(ids) for ids in batch.completion_ids)
    # TRL shuffles and splits the generation batch before the loss: match rows by their completion ids.
    [inputs] = seen
    for ids, mask, advantages in zip(*inputs.values(), strict=True):
        completion = ids[mask.bool()].tolist()
        assert completion in batch.completion_ids
        assert advantages.tolist() == pytest.approx(AdvantageProbe.row(completion, batch.width))
    # The completions table shows advantage_fn's advantages, each completion's mean over its tokens.
    means = [sum(AdvantageProbe.row(ids, len(ids))) / len(ids) for ids in batch.completion_ids]
    assert list(trainer._logs["advantages"]) == pytest.approx(means)


def test_train_sampler_is_a_repeat_sampler_with_these_fields():
    assert _parameters(GRPOTrainer._get_train_sampler) == ["self", "dataset"]
    assert "return RepeatSampler(" in _source(GRPOTrainer._get_train_sampler)
    assert _parameters(RepeatSampler.__init__) == [
        "self", "data_source", "mini_repeat_count", "batch_size", "repeat_count", "shuffle", "seed"
    ]  # fmt: skip
    sampler = RepeatSampler(list(range(6)), mini_repeat_count=2, batch_size=3, repeat_count=1, seed=0)
    for field in (
        "data_source",
        "mini_repeat_count",
        "batch_size",
        "repeat_count",
        "shuffle",
        "seed",
        "generator",
    ):
        assert hasattr(sampler, field), field


def test_epoch_seeded_sampler_replays_any_epoch_and_starts_as_trl():
    assert not hasattr(RepeatSampler, "set_epoch")  # if TRL adds one, use it instead of ours
    options = {"mini_repeat_count": 2, "batch_size": 3, "repeat_count": 1, "shuffle": True, "seed": 5}
    rows = list(range(9))
    running = EpochSeededRepeatSampler(rows, **options)
    epochs = []
    for epoch in range(3):
        running.set_epoch(epoch)
        epochs.append(list(running))
    assert epochs[0] == list(RepeatSampler(rows, **options))
    assert epochs[1] != epochs[0]
    fresh = EpochSeededRepeatSampler(rows, **options)  # a resumed run starts with a new sampler
    fresh.set_epoch(2)
    assert list(fresh) == epochs[2]


def test_query_grouped_sampler_equals_trl_sampler_with_one_row_per_query():
    options = {"mini_repeat_count": 2, "batch_size": 3, "repeat_count": 2, "shuffle": True, "seed": 7}
    rows = list(range(10))
    trl = list(RepeatSampler(rows, **options))
    assert list(QueryGroupedRepeatSampler(rows, [f"q{i}" for i in rows], **options)) == trl


def test_generate_and_reward_overrides_run_and_count_the_completion_tokens(grpo_trainer):
    logged = next(entry for entry in grpo_trainer.state.log_history if "completions/mean_length" in entry)
    completions = grpo_trainer.args.per_device_train_batch_size  # one step of one process
    assert grpo_trainer.generated_tokens == pytest.approx(logged["completions/mean_length"] * completions)
    assert grpo_trainer.phase_seconds["generation"] > 0 and grpo_trainer.phase_seconds["reward"] > 0


@pytest.mark.parametrize("stage", ["grpo_trainer", "sft_trainer"])
def test_log_metric_values_are_averaged_into_the_step_log(stage, request):
    trainer = request.getfixturevalue(stage)
    logged = [entry for entry in trainer.state.log_history if PROBE in entry]
    assert [(entry["step"], entry[PROBE]) for entry in logged] == [(1, 2.0)]


@pytest.mark.parametrize("stage", ["grpo_trainer", "sft_trainer"])
def test_tokens_seen_is_the_token_count_trl_logs(stage, request):
    trainer = request.getfixturevalue(stage)
    logged = next(entry for entry in trainer.state.log_history if "num_tokens" in entry)
    assert tokens_seen(trainer) == logged["num_tokens"] > 0


def test_render_prompt_is_the_text_trl_tokenizes_for_generation(grpo_trainer):
    tokenizer = grpo_trainer.processing_class
    for prompt in (PROMPTS[0], "plain text prompt"):
        ids = tokenizer(render_prompt(grpo_trainer, prompt), add_special_tokens=False)["input_ids"]
        assert ids == list(grpo_trainer._tokenize_prompts([prompt])[0][0])
    assert render_prompt(grpo_trainer, PROMPTS[0]).endswith("<|im_start|>assistant\n")


def test_policy_for_generation_yields_the_policy_without_gradients(grpo_trainer):
    policy = grpo_trainer.model
    batch = grpo_trainer.processing_class(render_prompt(grpo_trainer, PROMPTS[0]), return_tensors="pt")
    with policy_for_generation(grpo_trainer) as model:
        assert not torch.is_grad_enabled()
        assert [p.data_ptr() for p in model.parameters()] == [p.data_ptr() for p in policy.parameters()]
        torch.manual_seed(0)
        drawn = model.generate(**batch, do_sample=True, max_new_tokens=6)
    assert torch.is_grad_enabled()
    torch.manual_seed(0)
    with torch.no_grad():
        assert torch.equal(drawn, policy.generate(**batch, do_sample=True, max_new_tokens=6))


class FakeLLM:
    """A stand-in for vLLM's ``LLM``: each completion is its prompt's last 3 token ids."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[list[int]], SimpleNamespace]] = []

    def generate(self, prompts, sampling_params, use_tqdm) -> list[SimpleNamespace]:
        self.calls.append(([prompt["prompt_token_ids"] for prompt in prompts], sampling_params))
        return [
            SimpleNamespace(
                prompt_token_ids=prompt["prompt_token_ids"],
                outputs=[SimpleNamespace(token_ids=prompt["prompt_token_ids"][-3:], logprobs=None)],
            )
            for prompt in prompts
        ]


def test_policy_sampler_samples_from_trls_vllm_engine_with_the_call_settings(
    tiny_model, tmp_path, monkeypatch
):
    llm = FakeLLM()
    monkeypatch.setattr(
        vllm_generation.VLLMGeneration, "_init_vllm", lambda engine: setattr(engine, "llm", llm)
    )
    monkeypatch.setattr(vllm_generation, "SamplingParams", SimpleNamespace, raising=False)
    args = _grpo_args(tmp_path, use_vllm=True, vllm_mode="colocate", temperature=0.5, top_p=0.8)
    trainer = RankRLGRPOTrainer(
        model=tiny_model,
        reward_funcs=[_length_reward],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": prompt} for prompt in PROMPTS]),
    )
    engine = trainer.vllm_generation
    own = {attribute: getattr(engine, attribute) for attribute in VLLM_SETTINGS.values()}
    assert own == {"temperature": 0.5, "top_p": 0.8, "max_completion_length": 8}

    samples = PolicySampler(trainer)(
        PROMPTS[:2], ["", "[1]"], num_samples=3, temperature=1.2, top_p=0.9, max_new_tokens=5
    )
    tokenizer = trainer.processing_class
    texts = [render_prompt(trainer, PROMPTS[0]), render_prompt(trainer, PROMPTS[1]) + "[1]"]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    ((received, params),) = llm.calls
    assert received == [ids for ids in prompt_ids for _ in range(3)]  # each prompt once per sample
    assert (params.n, params.temperature, params.top_p, params.max_tokens) == (1, 1.2, 0.9, 5)
    assert samples == [[tokenizer.decode(ids[-3:], skip_special_tokens=True)] * 3 for ids in prompt_ids]
    assert {attribute: getattr(engine, attribute) for attribute in VLLM_SETTINGS.values()} == own
