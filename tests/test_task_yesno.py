"""Tests for the yes/no relevance-judgement task (tasks.yesno), its reward (rewards.yesno) and next-token
scoring in core.generation: the released Qwen3-Reranker and ProRank prompts render exactly, targets, the
never-raising parser and the reward follow the label, HFBackend's scores equal a manual forward pass's logit
difference, the strategy sorts by it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import huggingface_hub
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.generation import HFBackend, Sampling, encode_prompt
from core.tiny import TinyModelSpec, build_tiny_model
from rewards import get_reward
from rewards.registry import RewardError
from tasks import get_task
from tasks.strategy import StrategyOptions, rerank_rows
from tasks.toy import make_toy_splits
from tests.oracles import FunctionBackend

ROOT = Path(__file__).resolve().parents[1]
ROW = {
    "query_id": "q1",
    "query": "how long do fleas live",
    "candidates": [
        {"doc_id": "d1", "text": "Adult fleas live  two to\nthree months."},
        {"doc_id": "d2", "text": "Cats groom themselves."},
        {"doc_id": "d3", "text": "Flea collars."},
        {"doc_id": "d4", "text": "Fleas live on blood."},
    ],
    "labels": [
        {"doc_id": "d1", "relevance": 2},
        {"doc_id": "d3", "relevance": 0},
        {"doc_id": "d4", "relevance": 1},
    ],
}
QWEN3_RELEASED = (  # Qwen3-Reranker model card: prefix + format_instruction(...) + suffix
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n"
    "<Query>: how long do fleas live\n<Document>: Adult fleas live two to three months.<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n\n</think>\n\n"
)
PRORANK_TASK = (  # mxbai_rerank_v2.py MxbaiRerankV2.task_prompt
    "You are a search relevance expert who evaluates how well documents match search queries. For each "
    "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
    "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"
)
PRORANK_PREFIX = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n"
)
PRORANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Qwen3 model and tokenizer trained on the task's toy prompts; yes / no are single tokens."""
    task = get_task("yesno")
    rows, _ = make_toy_splits(64, 0)
    texts = [
        message["content"] + task.target(example)
        for row in rows
        for example in task.examples(row)[0]
        for message in task.prompt(example)
    ]
    spec = TinyModelSpec(vocab_size=400, hidden_size=64, num_hidden_layers=1, num_attention_heads=4)
    path = build_tiny_model(tmp_path_factory.mktemp("yesno"), texts, spec, phrases=task.template_phrases())
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _pair(task, doc_id: str) -> dict:
    candidate = next(c for c in ROW["candidates"] if c["doc_id"] == doc_id)
    return task.pair_example(ROW, candidate)


# --- prompts ------------------------------------------------------------------------------------------------


def test_qwen3_reranker_prompt_renders_the_released_text(tiny):
    _, tokenizer = tiny
    task = get_task("yesno")
    prompt = task.scoring_prompt(_pair(task, "d1"))
    assert prompt[:-1] == task.prompt(_pair(task, "d1"))  # the same turns in synthesis and training
    assert prompt[-1] == {"role": "assistant", "content": "<think>\n\n</think>\n\n"}
    assert tokenizer.decode(encode_prompt(tokenizer, prompt)) == QWEN3_RELEASED


@pytest.mark.parametrize(
    ("instruction", "head"), [(None, ""), ("Find medical answers", "instruction: Find medical answers\n")]
)
def test_prorank_prompt_renders_the_released_text(tiny, instruction, head):
    _, tokenizer = tiny
    task = get_task("yesno", template="prorank", instruction=instruction)
    pair = "query: how long do fleas live\ndocument: Adult fleas live two to three months.\n"
    user = head + pair + PRORANK_TASK
    rendered = tokenizer.decode(encode_prompt(tokenizer, task.prompt(_pair(task, "d1"))))
    assert rendered == PRORANK_PREFIX + user + PRORANK_SUFFIX
    assert task.answer_tokens == ("1", "0")


def test_custom_instruction_and_passage_budget():
    task = get_task("yesno", instruction="Find pet care passages", max_passage_words=3)
    user = task.prompt(_pair(task, "d1"))[1]["content"]
    assert (
        user
        == "<Instruct>: Find pet care passages\n<Query>: how long do fleas live\n<Document>: Adult fleas live"
    )


def test_template_phrases_hold_the_template_and_answer_tokens():
    phrases = get_task("yesno").template_phrases()
    assert {"<Instruct>:", "<Query>:", "<Document>:", "yes", "no"} <= set(phrases)
    assert any(phrase.startswith("Judge whether the Document") for phrase in phrases)
    assert phrases[-2:] == ["yes", "no"]
    assert get_task("yesno", template="prorank").template_phrases()[-2:] == ["1", "0"]


def test_bad_task_args_are_one_line_errors():
    with pytest.raises(ValueError, match="template 'prorang'.*prorank"):
        get_task("yesno", template="prorang")
    with pytest.raises(ValueError, match="two words"):
        get_task("yesno", answer_tokens=["yes", "not at all"])
    with pytest.raises(ValueError, match="two words"):
        get_task("yesno", answer_tokens="yn")
    with pytest.raises(ValueError, match="must differ"):
        get_task("yesno", answer_tokens=["Yes", "yes"])
    with pytest.raises(ValueError, match="negatives_per_query"):
        get_task("yesno", negatives_per_query=-1)


# --- examples, targets, parsing, synthesis checks -----------------------------------------------------------


def test_examples_are_single_pairs_of_the_first_positives_and_negatives():
    task = get_task("yesno")
    examples, reason = task.examples(ROW)
    assert reason == ""
    assert sorted(e["example_id"] for e in examples) == ["q1:d1", "q1:d2"]
    for example in examples:
        assert len(example["candidates"]) == 1 and example["task"] == "yesno"
    by_id = {e["example_id"]: e for e in examples}
    assert by_id["q1:d1"]["labels"] == [{"doc_id": "d1", "relevance": 2}] and by_id["q1:d2"]["labels"] == []
    assert task.examples(ROW) == (examples, "")
    more, _ = get_task("yesno", positives_per_query=2, negatives_per_query=2).examples(ROW)
    assert sorted(e["example_id"] for e in more) == ["q1:d1", "q1:d2", "q1:d3", "q1:d4"]


def test_rows_without_a_positive_or_negative_give_no_example():
    task = get_task("yesno")
    assert task.examples({**ROW, "labels": []}) == ([], "no_positive")
    all_relevant = [{"doc_id": c["doc_id"], "relevance": 1} for c in ROW["candidates"]]
    assert task.examples({**ROW, "labels": all_relevant}) == ([], "no_negative")
    positives, reason = get_task("yesno", negatives_per_query=0).examples({**ROW, "labels": all_relevant})
    assert reason == "" and [e["example_id"] for e in positives] == ["q1:d1"]


def test_targets_follow_the_label_and_the_teacher():
    task, prorank = get_task("yesno"), get_task("yesno", template="prorank")
    think = "<think>\n\n</think>\n\n"  # the answer opens with Qwen3-Reranker's empty think block
    targets = [task.target(_pair(task, d)) for d in ("d1", "d2", "d3", "d4")]
    assert targets == [think + "yes", think + "no", think + "no", think + "yes"]
    assert [prorank.target(_pair(prorank, d)) for d in ("d1", "d2")] == ["1", "0"]
    assert task.target({**_pair(task, "d2"), "completion": "no"}) == "no"
    assert task.reward_columns(_pair(task, "d4")) == {"gold_judgement": "yes", "answer_tokens": ["yes", "no"]}


@pytest.mark.parametrize(
    ("text", "value", "reason"),
    [
        ("yes", True, ""),
        ("  No.", False, ""),
        ("YES, the document answers it", True, ""),
        ("**no**", False, ""),
        ("<think>\n\n</think>\n\nyes", True, ""),
        ("<think>fleas are parasites</think> no", False, ""),
        ("yesterday", None, "not_a_judgement"),
        ("The answer is yes", None, "not_a_judgement"),
        ("", None, "empty_answer"),
        ("<think></think>  ", None, "empty_answer"),
        ("<think>yes", None, "unclosed_think"),
        (None, None, "not_text"),
        ("\x00\ufffd[]{}<<>>", None, "not_a_judgement"),
    ],
)
def test_parse_reads_the_first_word(text, value, reason):
    parsed = get_task("yesno").parse(_pair(get_task("yesno"), "d1"), text)
    assert (parsed.value, parsed.reason) == (value, reason)


def test_parse_uses_the_configured_answer_tokens():
    task = get_task("yesno", answer_tokens=["true", "false"])
    example = _pair(task, "d1")
    assert task.parse(example, "True").value is True and task.parse(example, "false").value is False
    assert task.parse(example, "yes").reason == "not_a_judgement"
    assert get_task("yesno", template="prorank").parse(example, "1\n").value is True


def test_accept_and_teacher_example():
    task = get_task("yesno")
    assert task.accept(_pair(task, "d1"), True) is None
    assert task.accept(_pair(task, "d2"), True) == "wrong_judgement"
    assert task.accept(_pair(task, "d3"), False) is None
    example = task.teacher_example(_pair(task, "d2"), " no \n", False, [False, False, True])
    assert example["completion"] == "no" and task.target(example) == "no"


# --- reward -------------------------------------------------------------------------------------------------


def test_yesno_match_rewards_a_judgement_equal_to_the_label():
    reward = get_reward("yesno_match")
    completions = [
        "yes",
        "No",
        "no",
        "<think>x</think>\nyes",
        "maybe",
        [{"role": "assistant", "content": "1"}],
    ]
    gold = ["yes", "no", "yes", "yes", "no", "1"]
    tokens = [["yes", "no"]] * 5 + [["1", "0"]]
    assert reward(completions, gold_judgement=gold, answer_tokens=tokens) == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_yesno_match_refuses_a_malformed_row():
    reward = get_reward("yesno_match")
    with pytest.raises(RewardError, match="gold_judgement 'maybe'"):
        reward(["yes"], gold_judgement=["maybe"], answer_tokens=[["yes", "no"]])
    with pytest.raises(RewardError, match="needs dataset column 'answer_tokens'"):
        reward(["yes"], gold_judgement=["yes"])


# --- scoring backends ---------------------------------------------------------------------------------------


def test_hf_scoring_equals_a_manual_forward_pass(tiny):
    model, tokenizer = tiny
    task = get_task("yesno")
    prompts = [task.prompt(_pair(task, doc_id)) for doc_id in ("d1", "d2", "d3", "d4")]
    generations = HFBackend(model, tokenizer, batch_size=3).generate(
        prompts, Sampling(score_tokens=("yes", "no"), num_samples=2)
    )
    yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
    for messages, samples in zip(prompts, generations, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([encode_prompt(tokenizer, messages)])).logits[0, -1]
        assert len(samples) == 2 and samples[0].num_tokens == 0
        logp_yes, logp_no = samples[0].candidate_logprobs
        assert logp_yes - logp_no == pytest.approx((logits[yes] - logits[no]).item(), abs=1e-4)
        assert math.exp(logp_yes) == pytest.approx(torch.softmax(logits, -1)[yes].item(), rel=1e-4)
        assert samples[0].text == ("yes" if logp_yes >= logp_no else "no")


def _embedded_shapes(model, run) -> list[tuple[int, ...]]:
    """The ``input_ids`` shape of every forward pass ``run()`` makes through ``model``."""
    shapes = []
    hook = model.get_input_embeddings().register_forward_hook(
        lambda module, inputs, output: shapes.append(tuple(inputs[0].shape))
    )
    try:
        run()
    finally:
        hook.remove()
    return shapes


def test_hf_scoring_runs_a_batch_shared_prefix_once_and_keeps_the_input_order(tiny):
    model, tokenizer = tiny
    task = get_task("yesno")
    other = {**ROW, "query_id": "q2", "query": "do cats groom"}
    examples = [_pair(task, "d1"), task.pair_example(other, ROW["candidates"][1]), _pair(task, "d3")]
    prompts = [task.scoring_prompt(example) for example in examples + examples[:1]]  # the last repeats one
    encoded = [encode_prompt(tokenizer, messages) for messages in prompts]
    assert len({len(ids) for ids in encoded}) == 3  # unsorted lengths: the backend reorders them
    yes, no = tokenizer.convert_tokens_to_ids(["yes", "no"])
    with torch.no_grad():
        last = [model(torch.tensor([ids])).logits[0, -1] for ids in encoded]
    alone = [(logits[yes] - logits[no]).item() for logits in last]
    sampling = Sampling(score_tokens=("yes", "no"))
    generations = []
    shapes = _embedded_shapes(
        model,
        lambda: generations.extend(HFBackend(model, tokenizer, batch_size=4).generate(prompts, sampling)),
    )
    scores = [samples[0].candidate_logprobs[0] - samples[0].candidate_logprobs[1] for samples in generations]
    assert scores == pytest.approx(alone, abs=1e-4)
    # the two queries share the system turn, the instruction and "<Query>:", not the query's words
    shared = next(i for i, tokens in enumerate(zip(*encoded, strict=False)) if len(set(tokens)) > 1)
    system = tokenizer.apply_chat_template(prompts[0][:1], tokenize=True, return_dict=True)["input_ids"]
    assert shared > len(system)
    assert shapes == [(1, shared), (4, max(map(len, encoded)) - shared)]
    # identical prompts share all but their last token, which gives the answer position
    twice = _embedded_shapes(
        model, lambda: HFBackend(model, tokenizer, 2).generate(prompts[:1] * 2, sampling)
    )
    assert twice == [(1, len(encoded[0]) - 1), (2, 1)]


def test_score_tokens_must_be_single_tokens_and_a_function_backend_needs_a_scorer(tiny):
    model, tokenizer = tiny
    prompt = [{"role": "user", "content": "fleas"}]
    with pytest.raises(ValueError, match=r"'yes no' is \d tokens of this tokenizer, not one"):
        HFBackend(model, tokenizer).generate([prompt], Sampling(score_tokens=("yes no", "no")))
    with pytest.raises(ValueError, match="needs a score function"):
        FunctionBackend(lambda messages: "yes").generate([prompt], Sampling(score_tokens=("yes", "no")))


def _oracle(grades: dict[tuple[str, str], int]):
    """Log-probabilities of (yes, no) from the (query, document) grade: p(yes) rises with relevance."""

    def score(messages, tokens):
        assert tokens == ("yes", "no") and messages[-1]["role"] == "assistant"
        query, doc = messages[1]["content"].split("<Query>: ", 1)[1].split("\n<Document>: ")
        p = (1 + grades[query, doc]) / 4
        return [math.log(p), math.log(1 - p)]

    return score


def test_strategy_orders_candidates_by_the_logit_difference():
    task = get_task("yesno")
    rows, _ = make_toy_splits(6, 0, seed=3)
    grades = {}
    for row in rows:
        relevance = {label["doc_id"]: label["relevance"] for label in row["labels"]}
        grades.update({(row["query"], c["text"]): relevance.get(c["doc_id"], 0) for c in row["candidates"]})
    strategy = task.strategy(StrategyOptions())
    results = rerank_rows(rows, strategy, FunctionBackend(lambda m: "", _oracle(grades)))
    reordered = 0
    for row, result in zip(rows, results, strict=True):
        grade = {c["doc_id"]: grades[row["query"], c["text"]] for c in row["candidates"]}
        expected = sorted(grade, key=lambda d: -grade[d])  # stable: ties keep first-stage order
        reordered += expected != list(grade)
        assert result.doc_ids == expected and result.prompts == len(grade) and result.fallbacks == 0
        p = [(1 + grade[d]) / 4 for d in expected]
        assert result.scores == pytest.approx([math.log(x) - math.log(1 - x) for x in p])
    assert reordered >= 3
    json.dumps(strategy.describe())


def test_strategy_scores_only_the_first_depth_and_refuses_several_stages():
    task = get_task("yesno")
    by_id = {c["doc_id"]: c for c in ROW["candidates"]}
    row = {**ROW, "candidates": [by_id[d] for d in ("d2", "d3", "d4", "d1")]}
    texts = [
        "Cats groom themselves.",
        "Flea collars.",
        "Fleas live on blood.",
        "Adult fleas live two to three months.",
    ]
    grades = {(ROW["query"], text): grade for text, grade in zip(texts, [0, 0, 1, 2], strict=True)}
    backend = FunctionBackend(lambda m: "", _oracle(grades))
    (result,) = rerank_rows([row], task.strategy(StrategyOptions(stages="3@1")), backend)
    assert result.doc_ids == ["d4", "d2", "d3", "d1"] and result.prompts == 3 and result.scores is None
    with pytest.raises(ValueError, match="one 'depth@1'"):
        task.strategy(StrategyOptions(stages="100@1,30@16"))
    assert task.strategy(StrategyOptions()).sampling.score_tokens == ("yes", "no")
