"""Pointwise 0-100 rubric scoring in Retro*'s format (arXiv 2509.24869 §3.1; code
``evaluation/bright/reranker_sglang.py``).

The model sees one query and one document under Retro*'s prompt: a relevance definition (``None``: Retro*'s
generic one for ``query_type`` queries and ``doc_type`` documents), three steps (query analysis, document
analysis, relevance annotation) and the five score bands, and ends its answer with ``<score>N</score>``, N an
integer in 0..100. An example is one (query, document) pair (:class:`tasks.pointwise_scoring.PairTask`:
Retro* takes 1 positive + 1 negative per query). The SFT target is the teacher's answer, or without one
``<score>100</score>`` for a relevant document (grade > 0, the top of the "highly relevant" band) and
``<score>0</score>`` otherwise. GRPO scores with Retro*'s R = 0.75 · R_intra + 0.25 · R_inter
(``retro_composite``, :mod:`rewards.rubric`), which pairs a query's ``is_positive`` documents within the
batch (``group_by_query: true`` keeps them together).

Inference (:class:`tasks.pointwise_scoring.Pointwise`; temperature 0.6, top-k 40, 4096 new tokens) scores a
pair by **mean-score@K**: the uniform mean of its K sampled scores, a failed parse counting 0 as in Retro*'s
code (and counted as a fallback, since it biases the mean down); the multi-pass ``stages: 100@1,30@16``
rescores the top 30 with 16 samples each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from core.generation import Generation, Messages, Sampling
from tasks.base import Parsed
from tasks.parsers_scores import parse_score_tag
from tasks.pointwise_scoring import PairTask, mean_score, template_pieces
from tasks.strategy import passage_text

MAX_SCORE = 100
RETRO_USER = (  # reranker_sglang.py
    "Here is the **relevance definition** in a retrieval task: {relevance_definition}\n"
    "\n"
    "Now given a **query** ({query_type}) and a **document** ({doc_type}) in this retrieval "
    "task, your mission is to perform the following steps.\n"
    "\n"
    "1. Query Analysis: Think to reason and describe what information would be most helpful in "
    "answering the query.\n"
    "2. Document Analysis: Discuss how the information provided by the document fulfills or "
    "fails to fulfill the requirements implied by the query.\n"
    "3. Relevance Annotation: Based on the relevance definition and the insights from the "
    "previous two steps, clearly justify your final relevance annotation result and annotate "
    "an integer score from a scale of 0 to 100. Please use the following guide:\n"
    "    - **80-100 (Highly Relevant):** The document directly and comprehensively addresses "
    "the query's intent. It is a core and authoritative answer.\n"
    "    - **60-80 (Relevant):** The document substantially addresses the query's intent, "
    "providing most of the key information, but might miss some minor details.\n"
    "    - **40-60 (Moderately Relevant):** The document is on-topic and addresses a part of "
    "the query's intent, but it is not a comprehensive answer.\n"
    "    - **20-40 (Slightly Relevant):** The document mentions keywords from the query, but "
    "its main topic is different. It offers very limited value.\n"
    "    - **0-20 (Irrelevant):** The document does not address the query's intent at all and "
    "is off-topic.\n"
    "\n"
    "After providing your detailed analysis and justification for all the steps above, "
    "conclude your entire response with the final relevance score. The score must be placed "
    "strictly between the <score> tags. There should be no other text or explanation inside "
    "the tags:\n"
    "<score>\n"
    "[From a scale of 0 to 100, annotate the degree of relevance between the query and the "
    "document.]\n"
    "</score>\n"
    "\n"
    "Query ({query_type}):\n"
    "[Begin of Query]\n"
    "{query}\n"
    "[End of Query]\n"
    "\n"
    "Document ({doc_type}):\n"
    "[Begin of Document]\n"
    "{doc}\n"
    "[End of Document]\n"
)
RETRO_DEFINITION = (
    "Given a query ({query_type}) and a document ({doc_type}), the document is relevant to the query if the "
    "document can help answer the query."
)


def retro_definition(query_type: str = "query", doc_type: str = "document") -> str:
    """Retro*'s generic relevance definition, for queries and documents of these kinds."""
    return RETRO_DEFINITION.format(query_type=query_type, doc_type=doc_type)


def retro_messages(
    query: str,
    document: str,
    relevance_definition: str | None = None,
    query_type: str = "query",
    doc_type: str = "document",
) -> Messages:
    """Retro*'s 0-100 rubric prompt (a single user turn); the default definition is Retro*'s generic one."""
    definition = relevance_definition or retro_definition(query_type, doc_type)
    content = RETRO_USER.format(
        relevance_definition=definition, query_type=query_type, doc_type=doc_type, query=query, doc=document
    )
    return [{"role": "user", "content": content}]


@dataclass(frozen=True)
class RubricTask(PairTask):
    """Retro*'s rubric task: score one document 0-100 under ``relevance_definition``."""

    relevance_definition: str | None = None
    query_type: str = "query"
    doc_type: str = "document"

    name: ClassVar[str] = "rubric"
    summary: ClassVar[str] = (
        "Retro*: rubric-score one passage 0-100, <score>N</score>; ranks by mean of K samples"
    )
    default_rewards: ClassVar[tuple[Any, ...]] = ("retro_composite",)
    top_score: ClassVar[int] = MAX_SCORE
    user_template: ClassVar[str] = RETRO_USER
    default_sampling: ClassVar[Sampling] = Sampling(max_new_tokens=4096, temperature=0.6, top_k=40)

    def definition(self) -> str:
        """The relevance definition the prompt states."""
        return self.relevance_definition or retro_definition(self.query_type, self.doc_type)

    def prompt(self, example: Mapping[str, Any]) -> Messages:
        """Retro*'s prompt (one user turn) for the example's document cut to ``max_passage_words``."""
        document = passage_text(example["candidates"][0]["text"], self.max_passage_words)
        return retro_messages(example["query"], document, self.definition(), self.query_type, self.doc_type)

    def target(self, example: Mapping[str, Any]) -> str:
        """SFT completion: the teacher's answer, or the label's score in tags (module docstring)."""
        if example.get("completion"):
            return example["completion"]
        return f"<score>{self.label_score(example)}</score>"

    def parse(self, example: Mapping[str, Any], text: str) -> Parsed:
        """The first ``<score>N</score>`` holding an integer, N in 0..100, else the parser's reason."""
        score = parse_score_tag(text, 0, MAX_SCORE)
        return Parsed(score.value) if score.valid else Parsed(reason=score.reason)

    def score(self, generations: Sequence[Generation]) -> tuple[float, int]:
        """Retro*'s mean-score@K of one pair's K samples (a failed parse counts 0) and how many failed."""
        return mean_score(
            [parse_score_tag(generation.text, 0, MAX_SCORE).value for generation in generations]
        )

    def template_phrases(self) -> list[str]:
        """Retro*'s prompt text around the query and the document, definition and types included."""
        return template_pieces(
            RETRO_USER,
            relevance_definition=self.definition(),
            query_type=self.query_type,
            doc_type=self.doc_type,
        )
