"""The ``rankrl tts`` configuration: one flat dataclass, read from YAML and ``key=value`` overrides the way
recipes are, and the sampling, budget forcing and MRT regret settings it describes
(:mod:`evaluation.tts_run` runs it)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from core.generation import Sampling
from core.recipe import described
from evaluation.tts import RULES, SCORED_RULES, BudgetForcing
from evaluation.tts_regret import Regret
from tasks import get_task


@dataclass
class TTSConfig:
    """Everything one test-time scaling report needs; every field is a YAML key and a ``key=value``."""

    model: str | None = described("Checkpoint folder or Hub id of the reasoner.")
    dataset: str | None = described("Problems: .jsonl/.parquet, a saved dataset folder or a Hub id.")
    split: str = described("Split of a dataset folder or Hub id.", "test")
    problem_field: str = described("Column holding the problem text (GSM8K: question).", "problem")
    answer_field: str = described("Column of the reference answer (GSM8K's '... #### 18' works).", "answer")
    max_problems: int | None = described("Use only the first N problems (None: all).")
    task_args: dict[str, Any] = described(
        "Options of the math task that renders the prompts (as in training recipes).", default_factory=dict
    )
    output_dir: str = described("Where the table, plot, samples and manifest are written.", "outputs/tts")
    n_values: list[int] = described(
        "Sample counts of the sweep; max(n_values) samples per problem serve every n.",
        default_factory=lambda: [1, 2, 4, 8, 16],
    )
    strategies: list[str] = described(
        f"Rules applied at every n: {', '.join(RULES)} (weighted, best_of_n need reward or reward_model).",
        default_factory=lambda: ["majority", "first_finish"],
    )
    reward: str | None = described("Scorer: a registered reward name or a dotted path to a reward function.")
    reward_args: dict[str, Any] = described("Factory arguments bound to the reward.", default_factory=dict)
    reward_model: str | None = described(
        "Scorer: a sequence-classification reward model (sigmoid of logit 0)."
    )
    budgets: list[int] = described(
        "Budget forcing: thinking-token budgets (empty: off).", default_factory=list
    )
    num_waits: int = described("Budget forcing: times an early end of thinking becomes wait_text.", 0)
    wait_text: str = described("Budget forcing: text appended to continue thinking (s1: Wait).", "\nWait")
    end_think: str = described("Budget forcing: the model's end-of-thinking marker.", "</think>")
    force_text: str = described("Budget forcing: appended to end thinking.", "\n</think>\n\nFinal answer:")
    answer_tokens: int = described("Budget forcing: tokens of the final answer after force_text.", 32)
    regret_cutoffs: list[int] = described(
        "MRT regret (arXiv 2503.07572 §6): token cutoffs C of the normalised regret 1 - area/C of pass@1 "
        "against tokens when stopped after each episode (the paper: 4096, 8192, 12288, 16384; empty: off).",
        default_factory=list,
    )
    regret_traces: int = described("MRT regret: the first N samples of a problem evaluated (paper: 16).", 16)
    regret_samples: int = described("MRT regret: forced answers per prefix, K (paper: 8).", 8)
    regret_max_new_tokens: int = described(
        "MRT regret: tokens per forced answer, at most max_new_tokens (paper: 4096).", 4096
    )
    regret_group_size: int = described("MRT regret: episodes merged into one point (paper: 10).", 10)
    max_new_tokens: int = described("Tokens per sampled completion.", 1024)
    temperature: float = described("Sampling temperature (> 0 when any n > 1).", 0.7)
    top_p: float = described("Nucleus sampling p.", 0.95)
    sample_top_k: int = described("Top-k sampling filter, 0 = off.", 0)
    batch_size: int = described("Prompts per generate call (each with its n samples).", 64)
    problems_per_batch: int = described(
        "Problems per chunk: sampled, scored, budget-forced and cached together (a kill loses one chunk).",
        256,
    )
    resume: bool = described(
        "Reuse the per-problem cache (cache.jsonl) in output_dir of an interrupted run.", True
    )
    scorer_batch_size: int = described("Completions per reward-model forward pass.", 16)
    save_samples: bool = described("Write each sample's text, tokens, answer, score to samples.jsonl.", True)
    seed: int = described("Seed of sampling.", 0)
    dtype: str = described("Model dtype: auto, bfloat16, float16 or float32.", "auto")

    def __post_init__(self) -> None:
        for name in ("n_values", "budgets", "regret_cutoffs"):
            values = getattr(self, name)
            if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in values):
                raise ValueError(f"{name} must be positive integers, got {values}")
        if not self.n_values and not self.budgets:
            raise ValueError("nothing to do: n_values and budgets are both empty")
        if bad := [name for name in self.strategies if name not in RULES]:
            raise ValueError(f"strategy {bad[0]!r}; expected one of {', '.join(RULES)}")
        if self.reward and self.reward_model:
            raise ValueError("set reward or reward_model, not both")
        if (needs := [s for s in self.strategies if s in SCORED_RULES]) and not (
            self.reward or self.reward_model
        ):
            raise ValueError(f"strategy {needs[0]!r} needs a scorer: set reward or reward_model")
        if self.temperature <= 0 and max(self.n_values, default=1) > 1:
            raise ValueError("temperature 0 makes the n samples identical; set temperature > 0")
        if self.regret_cutoffs and not self.n_values:
            raise ValueError("regret_cutoffs evaluates sampled traces: set n_values")
        if self.problems_per_batch <= 0:
            raise ValueError(f"problems_per_batch must be positive, got {self.problems_per_batch}")
        get_task("math", **self.task_args)  # an unknown option is a one-line error before any work

    def sampling(self, num_samples: int) -> Sampling:
        """The decoding settings for ``num_samples`` samples per prompt."""
        return Sampling(self.max_new_tokens, self.temperature, self.top_p, self.sample_top_k, num_samples)

    def regret(self) -> Regret:
        """MRT's regret curves with this config's settings (forced answers sampled as the samples are)."""
        budget = min(self.regret_max_new_tokens, self.max_new_tokens)
        sampling = replace(self.sampling(self.regret_samples), max_new_tokens=budget)
        return Regret(self.regret_traces, sampling, self.end_think, self.regret_group_size)

    def forcing(self, budget: int) -> BudgetForcing:
        """Budget forcing at ``budget`` thinking tokens with this config's texts."""
        return BudgetForcing(
            budget, self.num_waits, self.wait_text, self.end_think, self.force_text, self.answer_tokens
        )
