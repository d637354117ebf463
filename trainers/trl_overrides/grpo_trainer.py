"""rankrl's ``GRPOTrainer``: the group-aware reward protocol, query-grouped batches, phase timers and an
optional ``advantage_fn`` (see the package docstring for the TRL internals it relies on)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from rewards.groups import Generate, reward_scope
from rewards.listwise import completion_text
from trainers.advantages import AdvantageFn, ScoredBatch
from trainers.trl_overrides.internals import log_metric, project_labelled_positions_only
from trainers.trl_overrides.samplers import EpochSeededRepeatSampler, QueryGroupedRepeatSampler

TRAINER_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")


class GatheredReward:
    """A ``group``/``query`` reward computed on the gathered batch; returns this process's slice."""

    def __init__(self, reward: Callable[..., list[float | None]], trainer: RankRLGRPOTrainer) -> None:
        self.reward, self.trainer = reward, trainer
        self.__name__ = reward.__name__

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        passed = {key: columns.pop(key) for key in TRAINER_KWARGS if key in columns}
        local = {"prompts": prompts, "completions": completions, **columns}
        shards = gather_object([local])
        offset = sum(len(shard["completions"]) for shard in shards[: self.trainer.accelerator.process_index])
        batch = {key: [value for shard in shards for value in shard[key]] for key in local}
        batch["group_ids"] = self._group_ids(batch["prompts"])
        values = self.reward(**batch, **passed)
        return list(values)[offset : offset + len(completions)]

    def _group_ids(self, prompts: list[Any]) -> list[int]:
        """Global row // G, checked against the prompts: the G rows of a group must share one prompt."""
        size = (
            self.trainer.num_generations if self.trainer.model.training else self.trainer.num_generations_eval
        )
        group_ids = [row // size for row in range(len(prompts))]
        for row, prompt in enumerate(prompts):
            if prompt != prompts[row - row % size]:
                raise RuntimeError(
                    f"reward {self.__name__!r}: gathered row {row} does not share its group's prompt; TRL's "
                    "batch layout changed (see tests/test_trl_contract.py)"
                )
        return group_ids


class GeneratorReward:
    """A ``uses_generator`` reward, called with ``generate`` bound to the policy sampler."""

    def __init__(self, reward: Callable[..., list[float | None]], sampler: Generate) -> None:
        self.reward, self.sampler = reward, sampler
        self.__name__ = reward.__name__
        self.reward_scope = reward_scope(reward)

    def __call__(self, *args: Any, **columns: Any) -> list[float | None]:
        return self.reward(*args, generate=self.sampler, **columns)


class RankRLGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` with the group-aware reward protocol, query-grouped batches, phase timers and an
    optional ``advantage_fn`` in place of GRPO's group-normalised advantages."""

    def __init__(
        self, *args: Any, group_by_query: bool = False, advantage_fn: AdvantageFn | None = None, **kwargs: Any
    ) -> None:
        project_labelled_positions_only()
        super().__init__(*args, **kwargs)
        self.group_by_query = group_by_query
        self.advantage_fn = advantage_fn
        self.phase_seconds = {"generation": 0.0, "reward": 0.0}
        self.generated_tokens = 0
        self._scored: tuple[Any, ...] = ()
        self._sampler: Generate | None = None
        self.reward_funcs = [self._protocol(reward) for reward in self.reward_funcs]

    @property
    def sampler(self) -> Generate:
        """The policy sampler handed to ``uses_generator`` rewards and to ``advantage_fn`` (built once)."""
        if self._sampler is None:
            from trainers.policy_sampler import PolicySampler  # it imports this package's generation helpers

            self._sampler = PolicySampler(self)
        return self._sampler

    def _protocol(self, reward: Any) -> Any:
        if isinstance(reward, torch.nn.Module):
            return reward
        if getattr(reward, "uses_generator", False):
            reward = GeneratorReward(reward, self.sampler)
        return GatheredReward(reward, self) if reward_scope(reward) != "completion" else reward

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        sampler = super()._get_train_sampler(dataset)
        options = {
            "mini_repeat_count": sampler.mini_repeat_count,
            "batch_size": sampler.batch_size,
            "repeat_count": sampler.repeat_count,
            "shuffle": sampler.shuffle,
            "seed": sampler.seed,
        }
        if not self.group_by_query:
            return EpochSeededRepeatSampler(sampler.data_source, **options)
        source = dataset if dataset is not None else self.train_dataset
        if "query_id" not in source.column_names:
            raise ValueError("group_by_query needs a 'query_id' column in the training dataset")
        return QueryGroupedRepeatSampler(sampler.data_source, source["query_id"], **options)

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = super()._generate(*args, **kwargs)
        self.phase_seconds["generation"] += time.perf_counter() - start
        self.generated_tokens += sum(len(ids) for ids in result[1])
        return result

    def _calculate_rewards(
        self,
        inputs: list[dict[str, Any]],
        prompts: list[Any],
        completions: list[Any],
        completion_ids_list: Any,
    ) -> torch.Tensor:
        start = time.perf_counter()
        result = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.phase_seconds["reward"] += time.perf_counter() - start
        self._scored = (inputs, prompts, completions, completion_ids_list, result)
        return result

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.advantage_fn is not None:
            advantages = self.advantage_fn(self.scored_batch(output["completion_ids"].shape[1]))
            output["advantages"] = advantages.to(output["advantages"].device, output["advantages"].dtype)
            self._log_advantages(output["advantages"], output["completion_mask"])
        return output

    def _log_advantages(self, advantages: torch.Tensor, completion_mask: torch.Tensor) -> None:
        """Put ``advantage_fn``'s advantages (per completion: the mean over its tokens) in place of the
        group-normalised ones TRL queued for its completions table (``_logs["advantages"]``)."""
        if advantages.dim() == 2:
            mask = completion_mask.to(advantages.dtype)
            advantages = (advantages * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        every_process = self.accelerator.gather(advantages).tolist()
        queued = self._logs["advantages"]
        for _ in every_process:
            queued.pop()
        queued.extend(every_process)

    def scored_batch(self, width: int) -> ScoredBatch:
        """This process's part of the last batch ``_calculate_rewards`` scored (a :class:`ScoredBatch`)."""
        inputs, prompts, completions, completion_ids, every_process = self._scored
        start = self.accelerator.process_index * len(prompts)
        local = every_process[start : start + len(prompts)]
        rewards = (local * self.reward_weights.to(local.device)).nansum(dim=1)
        rewards[torch.isnan(local).all(dim=1)] = torch.nan
        mode = "train" if self.model.training else "eval"
        return ScoredBatch(
            prompts=list(prompts),
            completions=[completion_text(completion) for completion in completions],
            completion_ids=[list(map(int, ids)) for ids in completion_ids],
            columns={key: [row.get(key) for row in inputs] for key in inputs[0]} if inputs else {},
            rewards=rewards,
            width=width,
            tokenizer=self.processing_class,
            generate=self.sampler,
            seed=f"{self.args.seed}-{self.state.global_step}-{self.accelerator.process_index}",
            log=partial(log_metric, self, mode),
        )
