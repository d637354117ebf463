"""Contract tests: the TRL internals that ``trainers/trl_overrides.py`` and ``trainers/policy_sampler.py``
rely on, pinned against the installed TRL. A failure here means TRL changed underneath: read the failing
assertion, then update the override module (not these tests) after checking the new TRL code."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version

from packaging.specifiers import SpecifierSet
from trl import GRPOTrainer
from trl.data_utils import maybe_apply_chat_template
from trl.generation.vllm_generation import VLLMGeneration
from trl.models.utils import unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler

from trainers.trl_overrides import TRAINER_KWARGS, EpochSeededRepeatSampler, QueryGroupedRepeatSampler

PINNED_TRL = SpecifierSet(">=1.16,<1.17")  # pyproject.toml's range


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


def test_generation_helpers_keep_their_signatures():
    parameters = _parameters(unwrap_model_for_generation)
    assert parameters[:2] == ["model", "accelerator"]
    assert {"gather_deepspeed3_params", "gradient_checkpointing_kwargs"} <= set(parameters)
    assert _parameters(maybe_apply_chat_template)[:2] == ["example", "processing_class"]
    init = _source(GRPOTrainer.__init__)
    assert "self._dist = DistributedBackend(self.accelerator)" in init
    assert "self.chat_template_kwargs = " in init


def test_vllm_engine_reads_the_sampling_settings_the_sampler_swaps():
    assert _parameters(VLLMGeneration.generate) == [
        "self",
        "prompts",
        "images",
        "num_generations",
        "profiler",
    ]
    source = _source(VLLMGeneration.generate)
    for attribute in ("temperature", "top_p", "max_completion_length"):
        assert f"{attribute} = self.{attribute}" in source
    assert "all_prompts[::num_generations]" in source  # prompts arrive repeated num_generations times
