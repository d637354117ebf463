"""Setwise reranking in Rank-R1's format (arXiv 2503.06034; code ielab/llm-rankers Rank-R1).

The model sees a query and documents labelled ``[1]..[n]`` under DeepSeek-R1's system prompt and answers
with the label of the most relevant one: ``<think>...</think> <answer>[k]</answer>`` (§2,
``prompts/prompt_setwise-R1.toml``). ``prompt_version: v0.2`` renders the Rank-R1-v0.2 release's prompt
instead (``prompts/prompt_setwise-R1-v0.2.toml``: a RankLLM system prompt, three analysis steps, documents
``[i]: text`` separated by blank lines); the answer format, target and reward are the same.

An example is one set per query, built as ``create_dataset.py`` does: the first positive and the first
``negatives_per_query`` unlabelled (or zero-graded) candidates, hardest first, shuffled together (Rank-R1:
1 + 19 = 20 documents); the gold label ``"[k]"`` is the positive's position. GRPO scores with Rank-R1's
exact-match reward (``train_grpo.py`` ``reward_func_setwise``: 1 when ``answer.strip() == "[k*]"``, else
0); evaluation ranks by setwise heapsort (:mod:`tasks.heapsort`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.data import labels_to_qrels
from core.generation import Messages, Sampling
from tasks.base import Parsed, RankingTask, check_at_least_one, labelled_split
from tasks.parsers import parse_setwise_label
from tasks.strategy import StrategyOptions, passage_text

#: DeepSeek-R1's system prompt (arXiv 2501.12948 Table 1), which Rank-R1 keeps; the math task
#: (:mod:`tasks.math`) imports it from here, since its prompt adapts Rank-R1's.
R1_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
SETWISE_USER = (
    'Given the query: "{query}", which of the following documents is most relevant?\n{docs}\nAfter '
    "completing the reasoning process, please provide only the label of the most relevant document to the "
    "query, enclosed in square brackets, within the answer tags. For example, if the third document is the "
    "most relevant, the answer should be: <think> reasoning process here </think> <answer>[3]</answer>."
)

V02_SYSTEM_PROMPT = (
    "You are RankLLM, an intelligent assistant capable of evaluating the relevancy of passages to a given "
    "query."
)
V02_USER = (
    "You will be presented with a query, and a set of documents.\n\nYour task consists of the following step:"
    "\n\n1. Analyze the query: Carefully read the query and identify the core problem or question being "
    "asked.\n\n2. Analyze the documents: Thoroughly examine each document and briefly explain how each "
    "document is relevant or not relevant to the query.\n\n3. Find the most relevant document: Based on your "
    "analysis, select the most relevant document to the query from the set and briefly explain why.\n\n"
    "Important: Provide your analysis within the <think> </think> tags and answer only the label of the most "
    "relevant document, enclosed in square brackets, within the <answer> </answer> tags. For example, if the "
    "third document is the most relevant, your response should be:\n<think> Your analysis here </think>\n"
    "<answer>[3]</answer>\n\nHere is the query: {query}\n\nHere are the documents:\n{docs}"
)


@dataclass(frozen=True)
class SetwisePrompt:
    """One Rank-R1 release's setwise prompt: system text, user template (``{query}``, ``{docs}``), the
    format of one document (``{num}``, ``{text}``) and the separator between documents."""

    system: str
    user: str
    document: str
    separator: str

    def messages(self, query: str, passages: Sequence[str]) -> Messages:
        """The system and user messages for ``query`` and ``passages`` labelled from 1."""
        docs = self.separator.join(
            self.document.format(num=num, text=text) for num, text in enumerate(passages, start=1)
        )
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user.format(query=query, docs=docs)},
        ]


#: Rank-R1's prompts by release (``prompts/prompt_setwise-R1.toml`` and ``prompt_setwise-R1-v0.2.toml``).
PROMPTS = {
    "v0.1": SetwisePrompt(R1_SYSTEM_PROMPT, SETWISE_USER, "[{num}] {text}", "\n"),
    "v0.2": SetwisePrompt(V02_SYSTEM_PROMPT, V02_USER, "[{num}]: {text}", "\n\n"),
}


def setwise_messages(query: str, passages: Sequence[str], prompt_version: str = "v0.1") -> Messages:
    """Rank-R1's setwise prompt of ``prompt_version`` (v0.1: R1's system prompt, documents ``[i] text``
    joined by newlines)."""
    return PROMPTS[prompt_version].messages(query, passages)


@dataclass(frozen=True)
class SetwiseTask(RankingTask):
    """Rank-R1's setwise task: each example shows one positive among ``negatives_per_query`` negatives,
    passages cut to ``max_passage_words`` words; ``seed`` seeds the per-query shuffle.

    Each of the row's first ``positives_per_query`` positives gives one example with the same negatives
    (Rank-R1 uses one); the first example's id is the query id, the i-th's (i >= 1) ``"{query_id}:{i}"``.
    """

    positives_per_query: int = 1
    negatives_per_query: int = 19
    max_passage_words: int = 300
    seed: int = 0
    prompt_version: str = "v0.1"

    name: ClassVar[str] = "setwise"
    summary: ClassVar[str] = "Rank-R1: pick the most relevant of n labelled passages, <answer>[k]</answer>"
    default_rewards: ClassVar[tuple[Any, ...]] = ("rank_r1_setwise",)
    agreement: ClassVar[str] = "majority"

    def __post_init__(self) -> None:
        check_at_least_one(self, "positives_per_query", "negatives_per_query", "max_passage_words")
        if self.prompt_version not in PROMPTS:
            raise ValueError(
                f"setwise prompt_version {self.prompt_version!r}: expected one of {', '.join(PROMPTS)}"
            )

    @property
    def release_prompt(self) -> SetwisePrompt:
        """The Rank-R1 release's prompt this task renders (``prompt_version``)."""
        return PROMPTS[self.prompt_version]

    def examples(self, row: Mapping[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """One shuffled set per positive (module docstring); ``no_positive`` / ``no_negative`` otherwise."""
        positives, negatives, reason = labelled_split(row, self.positives_per_query, self.negatives_per_query)
        rng = random.Random(f"{self.seed}:{row['query_id']}")
        made = []
        for number, positive in enumerate(positives):
            shown = [positive, *negatives]
            rng.shuffle(shown)
            made.append(self._example(row, shown, number))
        return made, reason

    def _example(self, row: Mapping[str, Any], shown: list[dict], number: int) -> dict[str, Any]:
        """The row with ``shown`` as its candidates; the teacher columns describe the whole list, so they
        are cleared."""
        kept = {candidate["doc_id"] for candidate in shown}
        labels = [label for label in row["labels"] if label["doc_id"] in kept]
        example_id = str(row["query_id"]) if number == 0 else f"{row['query_id']}:{number}"
        return {
            **row,
            "candidates": shown,
            "labels": labels,
            **{"teacher_order": [], "reasoning": "", "teacher_scores": [], "completion": ""},
            "task": self.name,
            "example_id": example_id,
        }

    def prompt(self, example: Mapping[str, Any]) -> Messages:
        """Rank-R1's setwise prompt (of ``prompt_version``), documents cut to the word budget."""
        texts = [
            passage_text(candidate["text"], self.max_passage_words) for candidate in example["candidates"]
        ]
        return setwise_messages(example["query"], texts, self.prompt_version)

    def target(self, example: Mapping[str, Any]) -> str:
        """SFT completion: the teacher's answer, or the gold label after an empty think.

        Rank-R1's Setwise-SFT baseline (``create_dataset_sft.py``) trains on ``<answer>[k]</answer>`` alone
        under a prompt without thinking; under the R1 prompt the label follows an empty think so the target
        parses and earns the reward.
        """
        if example.get("completion"):
            return example["completion"]
        return f"<think></think>\n<answer>{self.gold_label(example)}</answer>"

    def gold_label(self, example: Mapping[str, Any]) -> str:
        """``"[k]"``: the position of the example's highest-graded candidate (the first on a tie)."""
        qrels = labels_to_qrels(example.get("labels") or [])
        grades = [qrels.get(candidate["doc_id"], 0) for candidate in example["candidates"]]
        if not grades or max(grades) <= 0:
            raise ValueError(
                f"setwise example {example.get('example_id')!r}: no candidate has a positive label"
            )
        return f"[{grades.index(max(grades)) + 1}]"

    def parse(self, example: Mapping[str, Any], text: str) -> Parsed:
        """The 1-based label k of ``<answer>[k]</answer>`` (lowercased first, as Rank-R1's inference parses),
        k within the shown documents; else the parser's reason."""
        label = parse_setwise_label(text, len(example["candidates"]))
        return Parsed(label.label) if label.valid else Parsed(reason=label.reason)

    def reward_columns(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """``gold_label`` ``"[k]"``, the column ``rank_r1_setwise`` reads (Rank-R1's ``ground_truth``)."""
        return {"gold_label": self.gold_label(example)}

    def strategy(self, options: StrategyOptions) -> Any:
        """Setwise heapsort (Rank-R1 inference: ``num_child`` 19, top 10, greedy, 2048 new tokens)."""
        from tasks.heapsort import SetwiseHeapsort

        sampling = options.sampling(Sampling(max_new_tokens=2048))
        return SetwiseHeapsort(options.num_child, options.top_k, sampling, self)

    def accept(self, example: Mapping[str, Any], value: Any) -> str | None:
        """The majority label must be the positive's (Rank-R1's reward on the teacher's answer)."""
        return None if f"[{value}]" == self.gold_label(example) else "wrong_label"

    def template_phrases(self, max_identifiers: int = 20) -> list[str]:
        """The prompt's constant stretches and the labels ``[1]..[max_identifiers]`` (one token each in a
        tiny test tokenizer, see :meth:`tasks.listwise.ListwiseTask.template_phrases`)."""
        release = self.release_prompt
        pieces = [release.system, *release.user.format(query="\0", docs="\0").split("\0")]
        phrases = {piece.strip(" \n") for piece in pieces if len(piece.strip()) > 1}
        return sorted(phrases) + [f"[{i}]" for i in range(1, max_identifiers + 1)]
