"""Relevance judgement: is the document relevant, "yes" or "no" (monoT5, Qwen3-Reranker, ProRank).

The model sees one (query, document) pair and answers with one of two answer tokens, ``("yes", "no")`` by
default or ``("1", "0")`` (ProRank). Inference generates nothing: one forward pass scores the pair by
**s = logit(yes) - logit(no)** at the first answer position (monoT5, arXiv 2003.06713, with
"true"/"false"; Qwen3-Reranker, arXiv 2506.05176, with "yes"/"no" after an empty think block; ProRank,
arXiv 2506.03487, with "1"/"0"), and the candidates are sorted by s. The backend returns the two tokens'
log-probabilities (``Sampling.score_tokens``); their difference equals the difference of the logits.

Prompt templates (``template``):

- ``qwen3_reranker``: Qwen3-Reranker's released prompt (model card of Qwen/Qwen3-Reranker-*): the system
  turn ``Judge whether the Document meets ...``, the user turn ``<Instruct>: {instruction}\\n<Query>:
  {query}\\n<Document>: {doc}`` with the default instruction ``Given a web search query, retrieve relevant
  passages that answer the query``, and the answer opened by an empty think block
  ``<think>\\n\\n</think>\\n\\n``: the SFT target starts with it and scoring pre-fills the assistant turn
  with it (a final assistant message: :mod:`core.generation` continues it), so the scored token sits where
  training put the answer token. The prompt itself (system and user turns) is the same in synthesis,
  training and evaluation.
- ``prorank``: ProRank's released prompt (mixedbread-ai/mxbai-rerank ``mxbai_rerank_v2.py``): Qwen2's
  default system turn, then ``[instruction: {instruction}\\n]query: {query}\\ndocument: {doc}\\n`` and the
  task prompt ending ``...(0 for not relevant, 1 for relevant).\\nRelevance:``; answer tokens ``1``/``0``.
  The released code joins separately tokenized pieces and truncates by tokens; here the text is joined and
  the passage cut to ``max_passage_words`` words, so token boundaries may differ at the joins.

An example is one (query, document) pair: a ranking row with a single candidate and its label; a row gives
its first ``positives_per_query`` positives and first ``negatives_per_query`` non-positives (hardest first
in first-stage order), in an order shuffled per query. The SFT target is the answer token (``yes`` when the
relevance is > 0); GRPO rewards a judgement that matches the label (``yesno_match``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.data import labels_to_qrels
from core.generation import Generation, Messages, Sampling
from core.hints import did_you_mean
from tasks.base import Parsed, RankingTask, labelled_split
from tasks.pointwise_scoring import parse_stages
from tasks.strategy import QueryRun, Ranked, Request, StrategyOptions, passage_text

QWEN3_RERANKER_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
QWEN3_RERANKER_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
QWEN3_RERANKER_PREFILL = "<think>\n\n</think>\n\n"
PRORANK_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
PRORANK_TASK = (
    "You are a search relevance expert who evaluates how well documents match search queries. For each "
    "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
    "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
)


@dataclass(frozen=True)
class JudgementTemplate:
    """One released prompt: ``user`` formats ``instruction_line`` (``instruction_line`` formats the
    instruction, left out when the instruction is empty), ``query`` and ``doc``; ``prefill`` starts the
    assistant turn; ``answer_tokens`` are (relevant, not relevant)."""

    system: str
    user: str
    instruction_line: str
    instruction: str
    prefill: str
    answer_tokens: tuple[str, str]


TEMPLATES = {
    "qwen3_reranker": JudgementTemplate(
        QWEN3_RERANKER_SYSTEM,
        "{instruction_line}<Query>: {query}\n<Document>: {doc}",
        "<Instruct>: {instruction}\n",
        QWEN3_RERANKER_INSTRUCTION,
        QWEN3_RERANKER_PREFILL,
        ("yes", "no"),
    ),
    "prorank": JudgementTemplate(
        PRORANK_SYSTEM,
        "{instruction_line}query: {query}\ndocument: {doc}\n" + PRORANK_TASK,
        "instruction: {instruction}\n",
        "",
        "",
        ("1", "0"),
    ),
}
_LEADING_THINK = re.compile(r"\s*<think>.*?</think>", re.DOTALL)
_WRAPPING = ".,;:!?\"'`*()[]"


def parse_judgement(text: str, answer_tokens: Sequence[str]) -> Parsed:
    """True / False when the first word of ``text`` (after an optional leading ``<think>...</think>``, with
    surrounding punctuation dropped, case-insensitive) is ``answer_tokens[0]`` / ``[1]``; never raises.

    Reasons: ``not_text``, ``unclosed_think``, ``empty_answer``, ``not_a_judgement``.
    """
    if not isinstance(text, str):
        return Parsed(reason="not_text")
    think = _LEADING_THINK.match(text)
    if think is None and text.lstrip().startswith("<think>"):
        return Parsed(reason="unclosed_think")
    words = text[think.end() if think else 0 :].split()
    if not words:
        return Parsed(reason="empty_answer")
    word = words[0].strip(_WRAPPING).lower()
    yes, no = (token.lower() for token in answer_tokens)
    if word in (yes, no):
        return Parsed(word == yes)
    return Parsed(reason="not_a_judgement")


def is_bare_judgement(text: str, answer_tokens: Sequence[str]) -> bool:
    """Whether ``text`` is one answer token and nothing else (case-insensitive; surrounding whitespace and an
    optional leading ``<think>...</think>`` allowed): an output in the finite set {relevant, not relevant}
    that ProRank's prompt warm-up asks for (arXiv 2506.03487). Never raises."""
    if not isinstance(text, str):
        return False
    think = _LEADING_THINK.match(text)
    answer = text[think.end() if think else 0 :].strip().lower()
    return answer in {token.lower() for token in answer_tokens}


@dataclass(frozen=True)
class YesNoTask(RankingTask):
    """Pointwise relevance judgement with a two-token answer (module docstring).

    ``answer_tokens`` (relevant, not relevant) defaults to the template's (``qwen3_reranker``: yes/no,
    ``prorank``: 1/0); ``instruction`` to the template's (``None``; an empty string leaves the instruction
    line out). ``negatives_per_query`` defaults to 1, balancing yes and no as monoT5's MS MARCO triples do
    (ProRank's data mix is not published); 0 keeps positives only.
    """

    template: str = "qwen3_reranker"
    answer_tokens: tuple[str, str] | None = None
    instruction: str | None = None
    max_passage_words: int = 300
    positives_per_query: int = 1
    negatives_per_query: int = 1
    seed: int = 0

    name: ClassVar[str] = "yesno"
    summary: ClassVar[str] = (
        "Qwen3-Reranker / ProRank / monoT5: answer yes or no, rank by logit(yes) - logit(no)"
    )
    default_rewards: ClassVar[tuple[Any, ...]] = ("yesno_match",)
    agreement: ClassVar[str] = "majority"

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            hint, known = did_you_mean(self.template, TEMPLATES), ", ".join(TEMPLATES)
            raise ValueError(f"task_args: yesno template {self.template!r}{hint}; expected one of {known}")
        given = self.answer_tokens
        tokens = (
            (given,) if isinstance(given, str) else tuple(given or TEMPLATES[self.template].answer_tokens)
        )
        if len(tokens) != 2 or not all(isinstance(t, str) and t and t.split() == [t] for t in tokens):
            raise ValueError(f"task_args: yesno answer_tokens must be two words, got {self.answer_tokens!r}")
        if tokens[0].lower() == tokens[1].lower():
            raise ValueError(f"task_args: yesno answer_tokens must differ, got {self.answer_tokens!r}")
        object.__setattr__(self, "answer_tokens", tokens)
        if self.instruction is None:
            object.__setattr__(self, "instruction", TEMPLATES[self.template].instruction)
        for option in ("max_passage_words", "positives_per_query"):
            if getattr(self, option) < 1:
                raise ValueError(f"task_args: yesno {option} must be >= 1, got {getattr(self, option)}")
        if self.negatives_per_query < 0:
            raise ValueError(
                f"task_args: yesno negatives_per_query must be >= 0, got {self.negatives_per_query}"
            )

    def examples(self, row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """One example per chosen (query, document) pair (module docstring); ``no_positive`` /
        ``no_negative`` when the row has none of one kind that is asked for."""
        positives, negatives, reason = labelled_split(row, self.positives_per_query, self.negatives_per_query)
        chosen = positives + negatives
        random.Random(f"{self.seed}:{row['query_id']}").shuffle(chosen)
        return [self.pair_example(row, candidate) for candidate in chosen], reason

    def pair_example(self, row: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, Any]:
        """``row`` cut to ``candidate`` and its label; the whole-list teacher columns are cleared."""
        doc_id = candidate["doc_id"]
        return {
            **row,
            "candidates": [dict(candidate)],
            "labels": [label for label in row.get("labels") or [] if label["doc_id"] == doc_id],
            **{"teacher_order": [], "reasoning": "", "teacher_scores": [], "completion": ""},
            "task": self.name,
            "example_id": f"{row['query_id']}:{doc_id}",
        }

    def prompt(self, example: Mapping[str, Any]) -> Messages:
        """The template's system and user turns over the passage cut to ``max_passage_words``."""
        spec = TEMPLATES[self.template]
        line = spec.instruction_line.format(instruction=self.instruction) if self.instruction else ""
        doc = passage_text(_only_candidate(example)["text"], self.max_passage_words)
        user = spec.user.format(instruction_line=line, query=example["query"], doc=doc)
        return [{"role": "system", "content": spec.system}, {"role": "user", "content": user}]

    def scoring_prompt(self, example: Mapping[str, Any]) -> Messages:
        """:meth:`prompt` with the assistant turn pre-filled up to the answer token (the prefill)."""
        prefill = TEMPLATES[self.template].prefill
        return self.prompt(example) + ([{"role": "assistant", "content": prefill}] if prefill else [])

    def relevant(self, example: Mapping[str, Any]) -> bool:
        """The label: the example's document has relevance > 0."""
        qrels = labels_to_qrels(example.get("labels") or [])
        return qrels.get(_only_candidate(example)["doc_id"], 0) > 0

    def gold_token(self, example: Mapping[str, Any]) -> str:
        """The answer token of the label."""
        return self.answer_tokens[0] if self.relevant(example) else self.answer_tokens[1]

    def target(self, example: Mapping[str, Any]) -> str:
        """SFT completion: the teacher's answer, or the template's prefill and the label's answer token."""
        return example.get("completion") or TEMPLATES[self.template].prefill + self.gold_token(example)

    def parse(self, example: Mapping[str, Any], text: str) -> Parsed:
        """True (relevant) / False, or the reason the text is no judgement (:func:`parse_judgement`)."""
        return parse_judgement(text, self.answer_tokens)

    def reward_columns(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """``gold_judgement`` (the label's answer token) and ``answer_tokens``, read by ``yesno_match``."""
        return {"gold_judgement": self.gold_token(example), "answer_tokens": list(self.answer_tokens)}

    def strategy(self, options: StrategyOptions) -> JudgementScoring:
        """One forward pass per pair over the first ``depth`` candidates of one ``depth@1`` stage."""
        stages = parse_stages(options.stages)
        if len(stages) != 1 or stages[0][1] != 1:
            raise ValueError(
                f"yesno scores each pair once: stages must be one 'depth@1', got {options.stages!r}"
            )
        sampling = options.sampling(Sampling(max_new_tokens=1, score_tokens=self.answer_tokens))
        return JudgementScoring(self, stages[0][0], sampling)

    def accept(self, example: Mapping[str, Any], value: Any) -> str | None:
        """The teacher's majority judgement must match the label."""
        return None if value == self.relevant(example) else "wrong_judgement"

    def template_phrases(self) -> list[str]:
        """The template's constant stretches, the instruction and the answer tokens (one token each in a tiny
        test tokenizer, so the scored answer tokens are single tokens there)."""
        spec = TEMPLATES[self.template]
        user = spec.user.format(instruction_line="\0", query="\0", doc="\0")
        pieces = [
            spec.system,
            self.instruction,
            *user.split("\0"),
            *spec.instruction_line.split("{instruction}"),
        ]
        phrases = {piece.strip() for piece in pieces if len(piece.strip()) > 1}
        return sorted(phrases) + list(self.answer_tokens)


@dataclass(frozen=True)
class JudgementScoring:
    """Ranks the first ``depth`` candidates by s = logp(yes) - logp(no) of one forward pass each (ties and
    the candidates below ``depth`` keep their order); the prompts are ``task.prompt`` of each pair. A pair
    whose backend gave no finite log-probabilities scores 0 and counts as a fallback. The prompts are
    ``task.scoring_prompt``: the task's prompt with the answer's prefill."""

    task: YesNoTask
    depth: int
    sampling: Sampling

    name = "yesno"

    def describe(self) -> dict[str, Any]:
        spec = TEMPLATES[self.task.template]
        return {
            "strategy": self.name,
            "template": {"name": self.task.template, "system": spec.system, "user": spec.user},
            "prefill": spec.prefill,
            "instruction": self.task.instruction,
            "answer_tokens": list(self.task.answer_tokens),
            "depth": self.depth,
            "max_passage_words": self.task.max_passage_words,
        }

    def rerank(self, row: Mapping[str, Any]) -> QueryRun:
        """Coroutine asking for every pair of the top ``depth`` at once, then sorting by score."""
        ranking = list(row["candidates"])
        top = ranking[: self.depth]
        prompts = [self.task.scoring_prompt(self.task.pair_example(row, candidate)) for candidate in top]
        answers = yield [Request(messages, self.sampling) for messages in prompts]
        scores = [judgement_score(samples[0]) for samples in answers]
        order = sorted(range(len(top)), key=lambda i: -(scores[i] or 0.0))
        ranking = [top[i] for i in order] + ranking[self.depth :]
        sorted_scores = [scores[i] or 0.0 for i in order]
        full = len(sorted_scores) == len(ranking)
        return Ranked([c["doc_id"] for c in ranking], sorted_scores if full else None, scores.count(None))


def judgement_score(generation: Generation) -> float | None:
    """logp(yes) - logp(no) of a scored generation (= logit(yes) - logit(no)); None without two finite
    log-probabilities."""
    logprobs = generation.candidate_logprobs
    if len(logprobs) != 2 or not all(math.isfinite(value) for value in logprobs):
        return None
    return logprobs[0] - logprobs[1]


def _only_candidate(example: Mapping[str, Any]) -> Mapping[str, Any]:
    candidates = example["candidates"]
    if len(candidates) != 1:
        raise ValueError(
            f"yesno example {example.get('example_id')!r}: {len(candidates)} candidates, expected 1"
        )
    return candidates[0]
