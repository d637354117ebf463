"""Teacher prompts: each synthesis task's prompt, from :mod:`tasks.prompts` (the single source of
every task prompt, shared with training and evaluation), paired with the parser in :mod:`rewards` that
reads the teacher's answer; and the teacher-only suffix.

- listwise: :func:`~tasks.prompts.listwise_messages`; parsed by
  :func:`rewards.listwise.read_listwise_answer` in ``strict`` mode (a full permutation).
- setwise: :func:`~tasks.prompts.setwise_messages`; parsed by
  :func:`tasks.parsers.parse_setwise_label`.
- pointwise 0-10: :func:`~tasks.prompts.erank_messages`; parsed by
  :func:`tasks.parsers_scores.parse_int_answer` with the think/answer structure required.
- rubric 0-100: :func:`~tasks.prompts.retro_messages`; parsed by
  :func:`tasks.parsers_scores.parse_score_tag`.
- groupwise JSON: :func:`~tasks.prompts.grouprank_messages`; parsed by
  :func:`tasks.parsers_scores.parse_group_scores`.
- math: :func:`~tasks.prompts.math_messages`; parsed by :func:`tasks.parsers.parse_think_answer`.

Parsers never raise: a teacher's answer is untrusted text.
"""

from __future__ import annotations

from tasks.prompts import Messages


def with_teacher_suffix(messages: Messages, suffix: str) -> Messages:
    """``messages`` with ``suffix`` appended to the last user turn (e.g. Retro*'s "keep reasoning concise
    within 512 tokens"); the student's prompt in the datasets stays without it."""
    if not suffix:
        return messages
    last_user = max(i for i, message in enumerate(messages) if message["role"] == "user")
    updated = [dict(message) for message in messages]
    updated[last_user]["content"] = f"{updated[last_user]['content']}\n{suffix}"
    return updated
