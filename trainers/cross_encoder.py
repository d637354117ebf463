"""A score-trained checkpoint as a sentence-transformers ``CrossEncoder`` scoring as ``rankrl eval`` does.

sentence-transformers (6.2) builds a CrossEncoder on a causal LM from ``modules.json``: a ``Transformer``
module (``transformer_task: text-generation``) renders each (query, document) pair through the tokenizer's
chat template, as the messages ``[{"role": "query", ...}, {"role": "document", ...}]``, left-pads, and a
``LogitScore`` module scores the last position by logit(true token) - logit(false token). So the checkpoint
carries:

- a chat template with a pair branch (:func:`add_pair_chat_template`): for exactly those two messages it
  renders the ``yesno`` task's scoring prompt, the text :func:`core.generation.encode_prompt` tokenizes for
  ``rankrl eval`` (system and user turns, generation prompt, prefill), with the document cut to the task's
  ``max_passage_words`` words as :func:`tasks.strategy.passage_text` cuts it; every other conversation renders
  as before;
- ``modules.json``, ``sentence_bert_config.json``, ``1_LogitScore/config.json`` (the task's answer-token ids)
  and ``config_sentence_transformers.json`` with an identity activation, so ``CrossEncoder(path).predict``
  returns s itself (sentence-transformers' default for this path is a sigmoid: pass
  ``activation_fn=torch.nn.Sigmoid()`` for p(yes) as Qwen3-Reranker reports it).

A LoRA output (an adapter folder) loads the same way: sentence-transformers reads its ``adapter_config.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from core.generation import Messages

logger = logging.getLogger("rankrl")

PAIR_START = "{#- rankrl: a sentence-transformers (query, document) pair is the yesno scoring prompt -#}\n"
ORIGINAL_START = "{#- rankrl: any other conversation: the original template -#}\n"
PAIR_TEST = "messages | length == 2 and messages[0]['role'] == 'query' and messages[1]['role'] == 'document'"
_QUERY, _DOCUMENT = "RANKRLQUERYSLOT", "RANKRLDOCUMENTSLOT"
LOGIT_SCORE_DIR = "1_LogitScore"


def scoring_text(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> str:
    """The text :func:`core.generation.encode_prompt` tokenizes: the chat prompt with the generation prompt,
    then a final assistant message's content (the prefill)."""
    prefill = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else None
    prompt = messages[:-1] if prefill is not None else messages
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) + (prefill or "")


def pair_chat_template(tokenizer: PreTrainedTokenizerBase, task: Any) -> str:
    """The tokenizer's chat template with the pair branch of the module docstring; a ``ValueError`` when the
    template cannot carry it (not one string, or a slot that does not survive rendering)."""
    original = tokenizer.chat_template
    if not isinstance(original, str):
        raise ValueError("the tokenizer has no single chat template")
    if ORIGINAL_START in original:  # trained before: replace the pair branch
        original = original.split(ORIGINAL_START, 1)[1].removesuffix("{%- endif %}")
    text = scoring_text(tokenizer, task.scoring_prompt(_pair_example(_QUERY, _DOCUMENT)))
    if text.count(_QUERY) != 1 or text.count(_DOCUMENT) != 1:
        raise ValueError("the query or document slot does not appear once in the rendered scoring prompt")
    slots = {
        _QUERY: "messages[0]['content']",
        _DOCUMENT: f"messages[1]['content'].split()[:{task.max_passage_words}] | join(' ')",
    }
    first, second = sorted(slots, key=text.index)
    head, rest = text.split(first)
    middle, tail = rest.split(second)
    pieces = [_literal(head), f"({slots[first]})", _literal(middle), f"({slots[second]})", _literal(tail)]
    pair = "".join("{{- " + piece + " }}" for piece in pieces)
    return f"{PAIR_START}{{%- if {PAIR_TEST} %}}{pair}{{%- else %}}{ORIGINAL_START}{original}{{%- endif %}}"


def add_pair_chat_template(tokenizer: PreTrainedTokenizerBase, task: Any) -> bool:
    """Give ``tokenizer`` the pair-aware template after checking that it renders a pair as
    :func:`scoring_text` does and any other conversation as the original template does; False (logged) when
    the template cannot carry a pair, and the tokenizer is left as it was."""
    try:
        template = pair_chat_template(tokenizer, task)
    except ValueError as error:
        logger.warning("no sentence-transformers pair template: %s", error)
        return False
    query, document = "what is  rankrl?", "rankrl\ttrains\n rerankers " + "word " * task.max_passage_words
    expected = scoring_text(tokenizer, task.scoring_prompt(_pair_example(query, document)))
    pair = [{"role": "query", "content": query}, {"role": "document", "content": document}]
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    before = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    options = dict(chat_template=template, add_generation_prompt=True, tokenize=False)
    rendered = [tokenizer.apply_chat_template(messages, **options) for messages in (pair, chat)]
    if rendered != [expected, before]:
        logger.warning("no sentence-transformers pair template: it does not reproduce the scoring prompt")
        return False
    tokenizer.chat_template = template
    return True


def write_cross_encoder_config(output_dir: str | Path, answer_ids: list[int]) -> None:
    """The sentence-transformers files of the module docstring (the chat template is the tokenizer's)."""
    folder = Path(output_dir)
    types = [
        ("", "sentence_transformers.base.modules.transformer.Transformer"),
        (LOGIT_SCORE_DIR, "sentence_transformers.cross_encoder.modules.logit_score.LogitScore"),
    ]
    modules = [{"idx": i, "name": str(i), "path": path, "type": kind} for i, (path, kind) in enumerate(types)]
    forward = {"method": "forward", "method_output_name": "logits"}
    transformer = {
        "transformer_task": "text-generation",
        "modality_config": {"text": forward, "message": {**forward, "format": "flat"}},
        "module_output_name": "causal_logits",
    }
    logit_score = {
        "true_token_id": answer_ids[0],
        "false_token_id": answer_ids[1],
        "module_input_name": "causal_logits",
    }
    model = {
        "model_type": "CrossEncoder",
        "activation_fn": "torch.nn.modules.linear.Identity",
        "prompts": {},
        "default_prompt_name": None,
    }
    (folder / LOGIT_SCORE_DIR).mkdir(parents=True, exist_ok=True)
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": transformer,
        f"{LOGIT_SCORE_DIR}/config.json": logit_score,
        "config_sentence_transformers.json": model,
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=2) + "\n")


def _literal(text: str) -> str:
    """``text`` as a Jinja string literal (Jinja decodes Python escapes, so JSON's are read back)."""
    return json.dumps(text, ensure_ascii=False)


def _pair_example(query: str, document: str) -> dict[str, Any]:
    return {"query": query, "candidates": [{"doc_id": "d", "text": document}], "labels": []}
