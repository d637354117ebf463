"""Prompt templates of the setwise, pointwise and groupwise strategies (listwise uses ReasonRank's, in
:mod:`trainers.tasks.listwise`).

Rank-R1's system and user text are those of its README (ielab/llm-rankers, Rank-R1). ERank's, Retro*'s and
GroupRank's follow the structure and wording that ``shared/specs/papers.md`` §4 (a), §6 (a) and §3 (a)
record (their full released templates were not available here); each strategy writes the template it used
into the evaluation manifest, so a number can always be traced to its exact prompt.
"""

from __future__ import annotations

RANK_R1_SYSTEM = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
    "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>."
)
RANK_R1_USER = (
    'Given the query: "{query}", which of the following documents is most relevant?\n{docs}\n'
    "After completing the reasoning process, please provide only the label of the most relevant document to "
    "the query, enclosed in square brackets, within the answer tags. For example, if the third document is "
    "the most relevant, the answer should be: <think> reasoning process here </think> <answer>[3]</answer>."
)

ERANK_INSTRUCTION = "Given a query, retrieval relevant passage."
ERANK_USER = (
    "Given a query and a document, please give a relevance score of 0~10.\n"
    "The goal or relevance definition is: {instruction}\n\n"
    "Here is the query:\n{query}\n\nHere is the document:\n{doc}\n\n"
    "After thinking, directly choose a relevance score from [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].\n"
    "- 0 represents completely not related\n- 10 means perfectly related.\n\n"
    "Desired output format:\n"
    "<think>put your thinking here</think><answer>Only allows an integer here</answer>"
)

RETRO_DEFINITION = "A document is relevant if it contains information that helps answer or address the query."
RETRO_USER = (
    "Here is the relevance definition in a retrieval task: {definition}\n\n"
    "Now given a query and a document in this retrieval task, your mission is to perform the following "
    "steps.\n"
    "1. Query Analysis: think about what information a relevant document would need to provide.\n"
    "2. Document Analysis: discuss how far the document provides that information.\n"
    "3. Relevance Annotation: based on the relevance definition and the insights from the previous two "
    "steps, annotate an integer score from 0 to 100 with these bands: 80-100 Highly Relevant, "
    "60-80 Relevant, 40-60 Moderately Relevant, 20-40 Slightly Relevant, 0-20 Irrelevant.\n"
    "After the analysis, end your answer with the score as <score>N</score>.\n\n"
    "[Begin of Query]\n{query}\n[End of Query]\n\n[Begin of Document]\n{doc}\n[End of Document]"
)

GROUPRANK_SYSTEM = (
    "You are an expert at evaluating and ranking documents for a query. PRIMARY criterion: Usefulness & "
    "Helpfulness for answering the query; SECONDARY: Relevance. Score every document on a 0-10 scale: 9-10 "
    "extremely helpful, 7-8 very helpful, 5-6 moderately helpful, 3-4 slightly helpful, 1-2 barely helpful, "
    "0 not helpful."
)
GROUPRANK_USER = (
    "I will provide you {num} documents, each indicated by a numerical identifier [i]. Score each document "
    "for the query.\n\nQuery: {query}\n\nDocuments:\n{docs}\n\n"
    "First explain your reasoning within <reason> </reason>, then give the scores within <answer> </answer> "
    'as a JSON object, e.g. <answer>```json {{"[1]": 5, "[2]": 3}}```</answer>.'
)


def passage_text(text: str, max_words: int) -> str:
    """Whitespace-normalised ``text`` cut to its first ``max_words`` words."""
    return " ".join(text.split()[:max_words])
