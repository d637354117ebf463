"""Every task prompt in one place: the templates of the papers and the chat messages built from them.

Data synthesis (:mod:`data_synth.tasks`, the teacher's and the student's prompt) and evaluation
(:mod:`evaluation`, the strategies' prompts) both build their prompts here, so a model is evaluated
with exactly the prompt it was trained on. Texts are the papers' released ones:

- listwise (ReasonRank, arXiv 2508.07050 Fig. 12): :class:`tasks.listwise.ListwiseTask`'s prompt,
  reused as is.
- setwise (Rank-R1, ``prompts/prompt_setwise-R1.toml``): DeepSeek-R1's system prompt and the setwise
  user prompt, documents ``[i] text`` joined by newlines.
- pointwise 0-10 (ERank, arXiv 2509.00520 Fig. 5), with Table 7's BEIR / TREC instruction as the default.
- rubric 0-100 (Retro*, arXiv 2509.24869 §3.1, ``reranker_sglang.py``), with its generic relevance definition.
- groupwise JSON (GroupRank, Diver's ``Reranker/rerank_groupwise.py``): documents ``[i]. text``, newlines
  folded and text cut at 3000 characters as the released code does.
- math: DeepSeek-R1's system prompt and the problem, with Rank-R1's closing instruction adapted to a final
  answer (no paper gives a math prompt).

Builders take passage texts as they should appear; callers that cut passages to a word budget (evaluation's
``max_passage_words``) do so before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from core.generation import Messages
from tasks.listwise import ListwiseTask

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
ERANK_USER = (
    "Given a query and a document, please give a relevance score of 0 to 10. The goal or relevance "
    "definition is: {instruction}\n\nHere is the query: {query}\nHere is the document: {document}\n"
    "After thinking, directly choose a relevance score from [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].\n"
    "- 0 represents completely not related.\n- 10 means perfectly related.\nDesired output format:\n"
    "<think>put your thinking here</think><answer>Only allows an integer here</answer>\nYour output:"
)
ERANK_INSTRUCTION = "Given a query, retrieval relevant passage."  # ERank Table 7, BEIR / TREC
RETRO_USER = (
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
GROUPRANK_SYSTEM = (
    "Your task is to evaluate and rank documents based on how well they help answer the given "
    "query. Follow this evaluation priority:\n"
    "1. PRIMARY: Usefulness & Helpfulness - Does the document provide actionable information, "
    "solutions, or direct answers that help address the user's needs?\n"
    "2. SECONDARY: Relevance - Does the document contain information related to the query "
    "topic?\n"
    "\n"
    "Evaluation Process:\n"
    "1. First, identify the user's core intent and what kind of help they need from the query\n"
    "2. For each document, assess:\n"
    "   - How directly it addresses the user's intent\n"
    "   - What actionable information or answers it provides\n"
    "   - How much it helps solve the user's problem or need\n"
    "3. Compare documents against each other to ensure proper ranking\n"
    "4. Assign scores that reflect the relative usefulness ranking\n"
    "\n"
    "Scoring Scale (0-10):\n"
    "- 9-10: Extremely helpful, directly answers the query with actionable information\n"
    "- 7-8: Very helpful, provides substantial useful information for the query\n"
    "- 5-6: Moderately helpful, contains some useful information but incomplete\n"
    "- 3-4: Minimally helpful, limited useful information despite topic relevance\n"
    "- 1-2: Barely helpful, mentions related topics but provides little useful information\n"
    "- 0: Not helpful at all, cannot assist with answering the query\n"
)
GROUPRANK_USER = (
    "I will provide you {TOPK} documents, each indicated by a numerical identifier []. Score "
    "these documents based on their Usefulness and Relevance to the query.\n"
    "Query:\n"
    "{QUERY}\n"
    "\n"
    "Documents:\n"
    "{PASSAGES}\n"
    "\n"
    "## Final Output Format\n"
    "You must structure your response in exactly two parts: provide your brief reasoning "
    "process first, then output final scores in JSON format like below, with document IDs as "
    "string keys and integer scores as values for all {TOPK} documents. \n"
    "The reasoning process and answer are enclosed within <reason> </reason> and <answer> "
    "</answer> tags, respectively. Do NOT output anything outside the specified tags. Follow "
    "this exact format:\n"
    "<reason> \n"
    "[Analyze each document's usefulness and relevance to the query, explaining your scoring "
    "rationale]\n"
    "</reason>\n"
    "<answer> \n"
    "```json\n"
    '{{"[1]": 5, "[2]": 3, "[3]": 8}}\n'
    "``` \n"
    "</answer>\n"
)
GROUPRANK_MAX_DOC_CHARS = 3000  # rerank_groupwise.py max_doc_lens
MATH_USER = (
    "{problem}\nAfter completing the reasoning process, please provide only the final answer within the "
    "answer tags. For example: <think> reasoning process here </think> <answer>42</answer>."
)


def listwise_messages(query: str, passages: Sequence[str], use_system_prompt: bool = True) -> Messages:
    """ReasonRank's listwise prompt, exactly as the listwise training task builds it."""
    candidates = [{"doc_id": str(i), "text": text} for i, text in enumerate(passages)]
    return ListwiseTask(use_system_prompt=use_system_prompt).prompt(
        {"query": query, "candidates": candidates}
    )


def setwise_messages(query: str, passages: Sequence[str]) -> Messages:
    """Rank-R1's setwise prompt: documents ``[i] text`` joined by newlines."""
    docs = "\n".join(f"[{i}] {text}" for i, text in enumerate(passages, start=1))
    return [
        {"role": "system", "content": R1_SYSTEM_PROMPT},
        {"role": "user", "content": SETWISE_USER.format(query=query, docs=docs)},
    ]


def erank_messages(query: str, document: str, instruction: str = ERANK_INSTRUCTION) -> Messages:
    """ERank's 0-10 pointwise prompt (a single user turn)."""
    content = ERANK_USER.format(instruction=instruction, query=query, document=document)
    return [{"role": "user", "content": content}]


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


def grouprank_messages(query: str, passages: Sequence[str]) -> Messages:
    """GroupRank's groupwise prompt: ``[i]. text`` blocks, newlines folded and text cut at 3000 chars."""
    texts = (re.sub(r"\n+", " ", text)[:GROUPRANK_MAX_DOC_CHARS] for text in passages)
    blocks = "".join(f"[{i}]. {text}\n\n" for i, text in enumerate(texts, start=1))
    user = GROUPRANK_USER.format(TOPK=len(passages), QUERY=query, PASSAGES=blocks)
    return [{"role": "system", "content": GROUPRANK_SYSTEM}, {"role": "user", "content": user}]


def math_messages(problem: str) -> Messages:
    """A reasoning prompt for a problem with a reference answer: R1's system prompt, answer in tags."""
    return [
        {"role": "system", "content": R1_SYSTEM_PROMPT},
        {"role": "user", "content": MATH_USER.format(problem=problem)},
    ]
