"""Every place rankrl depends on TRL internals, in one module; ``tests/test_trl_contract.py`` pins each.

:class:`RankRLGRPOTrainer` is TRL's ``GRPOTrainer`` plus the group-aware reward protocol of
:mod:`rewards.groups`:

- ``group`` / ``query`` rewards run on the batch gathered from every process (one ``gather_object``), get
  explicit ``group_ids`` (global row // G, TRL's layout: the G completions of a prompt are consecutive in
  process order) and return this process's slice, so a group split across processes is scored exactly
  as in one process. Every process computes the whole batch; the rewards are cheap and deterministic.
- ``uses_generator`` rewards get ``generate``, a :class:`trainers.policy_sampler.PolicySampler` over the
  policy being trained (HF ``generate`` or TRL's vLLM engine).
- The train sampler is TRL's ``RepeatSampler`` made resumable (:class:`EpochSeededRepeatSampler`: each
  epoch's order is seeded by ``seed + epoch``, so a run resumed from a checkpoint replays the same data
  order; TRL's sampler draws every epoch from one running generator, which a resumed run cannot replay).
  ``group_by_query=True`` uses :class:`QueryGroupedRepeatSampler`, which also keeps every prompt of a query
  (dataset column ``query_id``) in one generation batch.
- ``_generate`` and ``_calculate_rewards`` are timed into :attr:`RankRLGRPOTrainer.phase_seconds`, read by
  :class:`trainers.throughput.ThroughputCallback`.
- ``advantage_fn`` (an :data:`AdvantageFn`, e.g. MRT's termination baseline in :mod:`trainers.advantages`)
  replaces TRL's group-normalised advantages: after ``_generate_and_score_completions`` it gets this
  process's completions with their weighted reward (a :class:`ScoredBatch`) and returns their advantages,
  one per completion (B,) or one per completion token (B, T), which TRL's loss takes as they are; the
  completions table (``log_completions``) shows them, averaged over each completion's tokens.

:class:`RankRLSFTTrainer` is TRL's ``SFTTrainer`` whose loss can be DCO (:mod:`trainers.dco`, ``dco_n``): it
reads the per-token log-probabilities of TRL's own forward (a forward hook on the model TRL calls) and
returns DCO in place of cross-entropy, so TRL's metrics and token counts stay as they are.

The other modules reach TRL trainers' internals only through the functions here: :func:`log_metric` and
:func:`tokens_seen` (used by :mod:`trainers.throughput`; GRPO and SFT), :func:`render_prompt`,
:func:`policy_for_generation` and :func:`vllm_sample` (used by :mod:`trainers.policy_sampler`).

TRL internals relied on: ``_calculate_rewards(inputs, prompts, completions, completion_ids_list)`` calling
each reward as ``fn(prompts=, completions=, completion_ids=, **columns)`` on the process's slice of the
generation batch and returning every process's rewards (one column per reward function, NaN where a reward
returned None), called once by ``_generate_and_score_completions``, whose output holds this process's
``advantages`` (B,), padded ``completion_ids`` and ``completion_mask`` (B, T), which also appends every
process's advantages to ``_logs["advantages"]`` (the completions table), and whose loss (``_compute_loss``)
also takes (B, T) advantages; ``reward_weights``; ``_generate`` returning completion ids second;
``_get_train_sampler`` building a ``RepeatSampler``; ``num_generations`` / ``num_generations_eval``;
``model.training`` telling the mode; and those named in each function's docstring.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer, SFTTrainer
from trl.data_utils import maybe_apply_chat_template
from trl.models.utils import unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler

from rewards.groups import Generate, reward_scope
from rewards.listwise import completion_text
from trainers.advantages import AdvantageFn, ScoredBatch
from trainers.dco import dco_completion_loss

logger = logging.getLogger(__name__)

TRAINER_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")
VLLM_SETTINGS = {"temperature": "temperature", "top_p": "top_p", "max_new_tokens": "max_completion_length"}


def log_metric(trainer: Any, mode: str, name: str, value: float) -> None:
    """Add ``value`` to the metric ``name`` that a TRL trainer averages into its next log entry of ``mode``.

    Relies on ``trainer._metrics[mode]`` (GRPOTrainer and SFTTrainer): a ``defaultdict(list)`` per mode
    (``"train"`` / ``"eval"``) whose lists the trainer's ``log`` averages into the logged entry, then clears.
    """
    trainer._metrics[mode][name].append(value)


def tokens_seen(trainer: Any) -> int:
    """The tokens a TRL trainer has processed so far, over all processes: what it logs as ``num_tokens``.

    Relies on GRPOTrainer adding every generation batch's prompt + completion tokens to
    ``state.num_input_tokens_seen``, and on SFTTrainer counting attention-mask tokens in
    ``trainer._total_train_tokens`` (which GRPOTrainer leaves at 0).
    """
    return int(max(trainer.state.num_input_tokens_seen or 0, trainer._total_train_tokens))


def render_prompt(trainer: Any, prompt: Any) -> str:
    """``prompt`` as GRPOTrainer renders it for generation (chat template with the generation prompt).

    A conversation goes through the chat template, plain text stays as is. Relies on
    ``trainer.chat_template_kwargs`` (GRPOTrainer's ``args.chat_template_kwargs or {}``), passed to the chat
    template as TRL passes them (without tools, which rankrl does not use).
    """
    return maybe_apply_chat_template(
        {"prompt": prompt}, trainer.processing_class, **trainer.chat_template_kwargs
    )["prompt"]


@contextmanager
def policy_for_generation(trainer: Any) -> Iterator[Any]:
    """The policy being trained, ready for HF ``generate``, entered as ``GRPOTrainer._generate`` enters it.

    Relies on TRL's ``unwrap_model_for_generation`` (gathers ZeRO-3 parameters when
    ``ds3_gather_for_generation``, pauses activation checkpointing), under ``torch.no_grad`` and
    ``trainer._dist.summon_full_params(trainer.model_wrapped, recurse=False)`` (FSDP's full parameters).
    Under ZeRO-3 and FSDP entering it is collective: every process must enter it the same number of times.
    """
    with (
        unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        ) as model,
        torch.no_grad(),
        trainer._dist.summon_full_params(trainer.model_wrapped, recurse=False),
    ):
        yield model


def vllm_sample(
    trainer: Any, prompt_ids: list[list[int]], num_samples: int, settings: Mapping[str, Any]
) -> list[list[int]]:
    """``num_samples`` completions (token ids) of each of ``prompt_ids``, in order, from TRL's vLLM engine.

    ``settings`` (``temperature``, ``top_p``, ``max_new_tokens``) replace the engine's own for the duration
    of the call.

    Relies on ``trainer.vllm_generation`` (TRL's ``VLLMGeneration``, built when ``use_vllm``), whose
    ``generate(prompts, images, num_generations)`` takes each prompt repeated ``num_generations`` times,
    returns the completion ids second and reads ``temperature``, ``top_p`` and ``max_completion_length``
    (:data:`VLLM_SETTINGS`) from the engine when called. The engine holds the policy's weights of this step:
    GRPOTrainer syncs them before the step's own generation, which precedes the rewards that sample.
    """
    engine = trainer.vllm_generation
    saved = {attribute: getattr(engine, attribute) for attribute in VLLM_SETTINGS.values()}
    for key, attribute in VLLM_SETTINGS.items():
        setattr(engine, attribute, settings[key])
    repeated = [ids for ids in prompt_ids for _ in range(num_samples)]
    try:
        _, completion_ids, _, _ = engine.generate(prompts=repeated, images=None, num_generations=num_samples)
    finally:
        for attribute, value in saved.items():
            setattr(engine, attribute, value)
    return completion_ids


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's ``RepeatSampler`` whose shuffle for epoch e is seeded by ``seed + e`` (epoch 0 equals TRL's).

    Transformers' Trainer calls :meth:`set_epoch` (through accelerate's data loader) before each epoch, also
    when it resumes, so the order of every epoch depends on the epoch alone.
    """

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for ``epoch``."""
        if self.shuffle and self.seed is not None:
            self.generator.manual_seed(self.seed + epoch)


class QueryGroupedRepeatSampler(EpochSeededRepeatSampler):
    """TRL's ``RepeatSampler`` with batches made of whole queries.

    Queries (not rows) are shuffled with TRL's seeded generator; their rows, in dataset order, are laid end
    to end and cut into batches of ``batch_size`` prompts, each prompt repeated ``mini_repeat_count`` (G)
    times and each batch ``repeat_count`` times, as TRL does. A query's rows must divide ``batch_size``, so
    no query is ever split across generation batches: the most common such row count is used and queries
    with another count (a query short of negatives, a teacher answer filtered out) are left out, counted
    in a warning.
    """

    def __init__(self, data_source: Any, query_ids: Sequence[Hashable], **kwargs: Any) -> None:
        super().__init__(data_source, **kwargs)
        rows: dict[Hashable, list[int]] = {}
        for row, query_id in enumerate(query_ids):
            rows.setdefault(query_id, []).append(row)
        counts = Counter(len(members) for members in rows.values())
        usable = [size for size, _ in counts.most_common() if self.batch_size % size == 0]
        if not usable:
            raise ValueError(
                f"group_by_query needs queries whose number of rows divides the {self.batch_size} prompts of "
                f"a generation batch (generation_batch_size / num_generations); found queries with "
                f"{sorted(counts)} rows"
            )
        self.query_rows = [members for members in rows.values() if len(members) == usable[0]]
        if left_out := len(rows) - len(self.query_rows):
            logger.warning(
                "group_by_query: %d of %d queries do not have %d rows (found %s): left out of training",
                left_out, len(rows), usable[0], sorted(counts),
            )  # fmt: skip

    def __iter__(self):
        order = (
            torch.randperm(len(self.query_rows), generator=self.generator).tolist()
            if self.shuffle
            else range(len(self.query_rows))
        )
        indexes = [row for query in order for row in self.query_rows[query]]
        for start in range(0, len(indexes) - self.batch_size + 1, self.batch_size):
            chunk = indexes[start : start + self.batch_size]
            for _ in range(self.repeat_count):
                for index in chunk:
                    yield from [index] * self.mini_repeat_count


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
            from trainers.policy_sampler import PolicySampler  # it imports this module's generation helpers

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


class RankRLSFTTrainer(SFTTrainer):
    """``SFTTrainer`` with DCO, −log(1 − (1 − p̂)^N) (:mod:`trainers.dco`), as the loss when ``dco_n`` is set.

    ``token``: the per-token losses are summed and divided by TRL's cross-entropy denominator (the batch's
    completion tokens, ``num_items_in_batch``, with TRL's scaling across devices), so N = 1 is TRL's loss.
    ``sequence``: the mean over the micro-batch's completions, divided by the gradient accumulation steps
    when the Trainer leaves that division to the loss (``num_items_in_batch`` set), as TRL treats its MoE
    auxiliary loss. Logs ``dco/factor``, the mean weight F(N, p̂) on the cross-entropy gradient.

    Relies on ``SFTTrainer.compute_loss`` calling ``model(**inputs, fused_lm_head=True)`` once with
    gradients (no ``compute_loss_func`` and no label smoothing, which it refuses), whose output has
    ``log_probs`` and ``label_mask`` (TRL's ``FusedCausalLMOutput``, zero where the label is -100); on
    ``aux_loss_enabled`` and ``padding_free`` (SFTTrainer) and ``current_gradient_accumulation_steps``
    (transformers' Trainer).
    """

    def __init__(self, *args: Any, dco_n: int | None = None, dco_granularity: str = "sequence", **kwargs):
        super().__init__(*args, **kwargs)
        self.dco_n, self.dco_granularity = dco_n, dco_granularity
        if dco_n is None:
            return
        clashes = {
            "loss_type": self.args.loss_type != "nll",
            "label_smoothing_factor": self.args.label_smoothing_factor > 0,
            "compute_loss_func": self.compute_loss_func is not None,
            "a MoE router auxiliary loss": self.aux_loss_enabled,
            "packing (sequence granularity)": dco_granularity == "sequence"
            and (self.args.packing or self.padding_free),
        }
        refused = [name for name, clash in clashes.items() if clash]
        if refused:
            raise ValueError(
                f"dco_n is set: DCO replaces the loss, so it cannot be used with {', '.join(refused)}"
            )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.dco_n is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        result, outputs = self._forward_outputs(model, inputs, return_outputs, num_items_in_batch)
        total, items, factors = dco_completion_loss(
            outputs.log_probs, outputs.label_mask, self.dco_n, self.dco_granularity
        )
        training = self.model.training
        log_metric(self, "train" if training else "eval", "dco/factor", (factors / items.clamp(min=1)).item())
        if self.dco_granularity == "token":
            count = items if num_items_in_batch is None else num_items_in_batch
            loss = total / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        else:
            scaled = training and num_items_in_batch is not None  # the Trainer will not divide by the steps
            loss = total / items.clamp(min=1) / (self.current_gradient_accumulation_steps if scaled else 1)
        return (loss, result[1]) if return_outputs else loss

    def _forward_outputs(self, model: Any, inputs: Any, *args: Any) -> tuple[Any, Any]:
        """TRL's ``compute_loss`` result and the output of its fused forward (caught by a forward hook)."""
        captured: list[Any] = []
        hook = model.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            result = super().compute_loss(model, inputs, *args)
        finally:
            hook.remove()
        outputs = next((out for out in captured if getattr(out, "log_probs", None) is not None), None)
        if outputs is None:
            raise RuntimeError(
                "DCO found no per-token log_probs in SFTTrainer's forward: TRL's compute_loss changed "
                "(see tests/test_trl_contract.py)"
            )
        return result, outputs
