"""ERank's and ProRank's inference and ProRank's rewards on hand-made examples in the papers' formats.

The papers' rewards and inference already tested elsewhere are not repeated here (ERank's r_RR / r_nDCG /
r_SE: test_rewards_group.py; s * p(s): test_task_pointwise.py; Retro*'s R_intra, R_inter and composite:
test_rewards_more.py; mean-score@K and the 100@1 -> 30@16 multi-pass: test_task_rubric.py; ProRank's
prompt, targets and 1/0 parsing: test_task_yesno.py). This file adds:

- ERank (arXiv 2509.00520 §3.2, App. G): s * p(s) of each pair, then the hybrid with the first stage,
  0.2 * z(first stage) + 0.8 * z(reranker), z the per-query z-score (population std);
- ProRank (arXiv 2506.03487): the stage-1 reward (accuracy + format validity, ``yesno_match`` with
  ``format_weight``), the ranking by s = logp("1") - logp("0") with the ProRank prompt, and the score stage
  (``stage: score``) training on the task's "1" / "0" logits, not yes / no.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from core.generation import Generation
from evaluation.fusion import fuse
from rankrl.cli import main as cli
from rewards import get_reward
from tasks import get_task
from tasks.pointwise import erank_score
from tasks.strategy import StrategyOptions, rerank_rows
from tasks.yesno import is_bare_judgement
from tests.oracles import FunctionBackend
from trainers.cross_encoder import LOGIT_SCORE_DIR

ROOT = Path(__file__).resolve().parents[1]


def _erank(score: str, probability: float) -> Generation:
    """An ERank answer whose score token ``score`` has probability ``probability``."""
    text = f"<think>The passage states how long fleas live.</think><answer>{score}</answer>"
    tokens = ("<think>The passage states how long fleas live.</think>", "<answer>", score, "</answer>")
    return Generation(text, 4, tokens, (-3.0, -0.1, math.log(probability), -0.2))


# --- ERank: s * p(s), then the z-score hybrid with the first stage ------------------------------------------


def test_erank_ranks_by_s_times_p_s_and_fuses_z_scores_with_weight_0_2():
    # d1 says 9 with p 0.6 -> 5.4; d2 says 7 with p 0.8 -> 5.6; d3 says 2 with p 0.9 -> 1.8. The integer
    # alone puts d1 first, s * p(s) puts d2 first.
    reranker = [erank_score(_erank(s, p)) for s, p in (("9", 0.6), ("7", 0.8), ("2", 0.9))]
    assert reranker == pytest.approx([5.4, 5.6, 1.8])
    bm25 = {"d1": 18.0, "d2": 11.0, "d3": 13.0}
    # Reranker: mean 12.8 / 3, population std sqrt(9.1467 / 3) = 1.74611 -> z 0.64906, 0.76360, -1.41267.
    # BM25: mean 14, std sqrt(26 / 3) = 2.94392 -> z 1.35873, -1.01905, -0.33968.
    # Fused 0.2 z(BM25) + 0.8 z(reranker): d1 0.79100, d2 0.40707, d3 -1.19807: BM25 puts d1 back on top.
    doc_ids, fused = fuse(["d1", "d2", "d3"], reranker, bm25, "zscore", 0.2)
    assert doc_ids == ["d1", "d2", "d3"]
    assert fused == pytest.approx([0.79100, 0.40707, -1.19807], abs=1e-5)
    alone, _ = fuse(["d1", "d2", "d3"], reranker, bm25, "zscore", 0.0)
    assert alone == ["d2", "d1", "d3"]


# --- ProRank stage 1: accuracy + format validity ------------------------------------------------------------


def test_prorank_warmup_reward_adds_format_validity_to_accuracy():
    outputs = ["1", " 0\n", "1, the passage answers it", "Relevance: 1", "<think>no</think>0", "yes", "0"]
    gold = ["1", "0", "1", "1", "1", "1", "1"]
    columns = {"gold_judgement": gold, "answer_tokens": [["1", "0"]] * len(gold)}
    # correct: 1, 1, 1 (first word "1,"), 0 (first word "Relevance:"), 0, 0, 0
    # bare answer in {1, 0}: 1, 1, 0, 0, 1, 0, 1
    assert get_reward("yesno_match")(outputs, **columns) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    reward = get_reward("yesno_match", format_weight=0.5)
    assert reward(outputs, **columns) == [1.5, 1.5, 1.0, 0.0, 0.5, 0.0, 0.5]
    bare = [is_bare_judgement(text, ("1", "0")) for text in outputs]
    assert bare == [True, True, False, False, True, False, True]
    assert not is_bare_judgement(None, ("1", "0")) and is_bare_judgement("YES", ("yes", "no"))
    with pytest.raises(ValueError, match="format_weight must be a number"):
        get_reward("yesno_match", format_weight="half")(outputs, **columns)


# --- ProRank inference: s = logp("1") - logp("0") ----------------------------------------------------------


def test_prorank_ranks_by_the_logit_difference_of_1_and_0():
    task = get_task("yesno", template="prorank")
    row = {
        "query_id": "q1",
        "query": "how long do fleas live",
        "candidates": [
            {"doc_id": "d1", "text": "Cats groom themselves."},
            {"doc_id": "d2", "text": "Adult fleas live two to three months."},
            {"doc_id": "d3", "text": "Fleas live on blood."},
        ],
        "labels": [],
    }
    probabilities = {  # (p("1"), p("0")) of the next token after "Relevance:"
        "Cats groom themselves.": (0.2, 0.7),
        "Adult fleas live two to three months.": (0.6, 0.3),
        "Fleas live on blood.": (0.45, 0.45),
    }
    seen = []

    def score(messages, tokens):
        seen.append(tokens)
        assert messages[-1]["content"].endswith("(0 for not relevant, 1 for relevant).\nRelevance:")
        document = messages[-1]["content"].split("\ndocument: ")[1].split("\n")[0]
        return [math.log(p) for p in probabilities[document]]

    (result,) = rerank_rows([row], task.strategy(StrategyOptions()), FunctionBackend(lambda m: "", score))
    assert seen == [("1", "0")] * 3
    # s = log(p1 / p0): d2 log 2 = 0.69315, d3 log 1 = 0, d1 log(2 / 7) = -1.25276
    assert result.doc_ids == ["d2", "d3", "d1"]
    assert result.scores == pytest.approx([0.69315, 0.0, -1.25276], abs=1e-5)


# --- ProRank stage 2: the score stage learns logit("1") - logit("0") ----------------------------------------


@pytest.mark.slow
def test_prorank_score_stage_trains_the_1_and_0_logits(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RANKRL_SMOKE_DIR", str(tmp_path / "smoke"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    output = tmp_path / "score"
    cli(["train", "recipes/prorank/qwen2.5-0.5b-score.yaml", "--smoke", f"output_dir={output}"])
    tokenizer = AutoTokenizer.from_pretrained(output)
    one, zero = (tokenizer.encode(token, add_special_tokens=False) for token in ("1", "0"))
    config = json.loads((output / LOGIT_SCORE_DIR / "config.json").read_text())
    assert [config["true_token_id"], config["false_token_id"]] == one + zero
    assert len(one) == len(zero) == 1 and "yes" not in tokenizer.decode(one + zero)
