"""The teacher-only suffix of synthesis prompts.

The teacher's prompt is the recipe task's own prompt (:meth:`tasks.base.Task.prompt`, the one training and
evaluation render too) and its answer is read by the task's parser (:meth:`tasks.base.Task.parse`, which
never raises: a teacher's answer is untrusted text); a recipe may append a ``teacher_suffix`` to the last user
turn of the teacher's copy only.
"""

from __future__ import annotations

from core.generation import Messages


def with_teacher_suffix(messages: Messages, suffix: str) -> Messages:
    """``messages`` with ``suffix`` appended to the last user turn (e.g. Retro*'s "keep reasoning concise
    within 512 tokens"); the student's prompt in the datasets stays without it."""
    if not suffix:
        return messages
    last_user = max(i for i, message in enumerate(messages) if message["role"] == "user")
    updated = [dict(message) for message in messages]
    updated[last_user]["content"] = f"{updated[last_user]['content']}\n{suffix}"
    return updated
