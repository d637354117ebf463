"""Every place rankrl depends on TRL internals, in one package; ``tests/test_trl_contract*.py`` pin each.

Its modules: :mod:`.grpo_trainer` (:class:`RankRLGRPOTrainer`), :mod:`.sft_trainer`
(:class:`RankRLSFTTrainer`), :mod:`.samplers` (the resumable train samplers) and :mod:`.internals` (the
functions other modules call).

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

Both trainers call :func:`project_labelled_positions_only` (:mod:`.internals`), so TRL's fused LM head
projects only the labelled positions on CPU too, as it does on CUDA.

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

from trainers.trl_overrides.grpo_trainer import GatheredReward, GeneratorReward, RankRLGRPOTrainer
from trainers.trl_overrides.internals import (
    log_metric,
    policy_for_generation,
    render_prompt,
    tokens_seen,
    vllm_sample,
)
from trainers.trl_overrides.samplers import EpochSeededRepeatSampler, QueryGroupedRepeatSampler
from trainers.trl_overrides.sft_trainer import RankRLSFTTrainer

__all__ = [
    "EpochSeededRepeatSampler",
    "GatheredReward",
    "GeneratorReward",
    "QueryGroupedRepeatSampler",
    "RankRLGRPOTrainer",
    "RankRLSFTTrainer",
    "log_metric",
    "policy_for_generation",
    "render_prompt",
    "tokens_seen",
    "vllm_sample",
]
