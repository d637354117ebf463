"""Score learning's losses against hand computation, autograd and sentence-transformers' own loss modules, and
the score groups built from ranking rows (and from the yes/no task's one-pair rows, merged per query)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tasks import get_task
from trainers import score_losses as losses
from trainers.score import query_rows, score_groups


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ----- losses: hand-computed values and gradients -----


def test_bce_is_the_mean_logistic_loss_of_each_pair():
    scores = torch.tensor([[2.0, -1.0]], requires_grad=True)
    loss = losses.pointwise_bce(scores, torch.tensor([[1.0, 0.0]]))
    # -log sigmoid(2) and -log(1 - sigmoid(-1)) = log(1 + e^-2) and log(1 + e^-1), averaged
    assert loss.item() == pytest.approx((math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2, rel=1e-6)
    loss.backward()  # d/ds = (sigmoid(s) - y) / number of pairs
    expected = torch.tensor([[(sigmoid(2) - 1) / 2, sigmoid(-1) / 2]])
    assert torch.allclose(scores.grad, expected, atol=1e-7)


def test_listwise_is_the_softmax_cross_entropy_of_the_positive():
    scores = torch.tensor([[1.0, 0.0, 0.0]], requires_grad=True)
    loss = losses.listwise_ce(scores, temperature=0.5)
    # -log(e^(1/0.5) / (e^2 + 2)) = log(1 + 2 e^-2)
    assert loss.item() == pytest.approx(math.log1p(2 * math.exp(-2)), rel=1e-6)
    loss.backward()  # (softmax(s / T) - onehot) / T
    p = math.exp(2) / (math.exp(2) + 2)
    expected = torch.tensor([[(p - 1) / 0.5, (1 - p) / 2 / 0.5, (1 - p) / 2 / 0.5]])
    assert torch.allclose(scores.grad, expected, atol=1e-6)


def test_ranknet_averages_log2_logistic_terms_over_pairs_with_different_grades():
    scores = torch.tensor([[0.5, 1.5, -1.0]], requires_grad=True)
    loss = losses.ranknet(scores, torch.tensor([[1.0, 0.0, 0.0]]))
    # pairs (0, 1) and (0, 2): -log2 sigmoid(0.5 - 1.5) and -log2 sigmoid(0.5 + 1.0), averaged
    expected = (math.log2(1 + math.exp(1.0)) + math.log2(1 + math.exp(-1.5))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()  # d/ds_i of -log2 sigmoid(s_i - s_j) = -(1 - sigmoid(s_i - s_j)) / ln 2
    g01, g02 = (1 - sigmoid(-1.0)) / math.log(2) / 2, (1 - sigmoid(1.5)) / math.log(2) / 2
    assert torch.allclose(scores.grad, torch.tensor([[-g01 - g02, g01, g02]]), atol=1e-6)


def test_lambdaloss_weights_each_pair_by_its_ndcg_loss2pp_weight():
    # grades [2, 1, 0], scores [0, 1, -1]: predicted ranks doc1 = 1, doc0 = 2, doc2 = 3
    scores = torch.tensor([[0.0, 1.0, -1.0]])
    loss = losses.lambdaloss(scores, torch.tensor([[2.0, 1.0, 0.0]]))
    max_dcg = 3 / math.log2(2) + 1 / math.log2(3)
    gain = [3 / max_dcg, 1 / max_dcg, 0.0]
    rank = [2, 1, 3]

    def weight(i: int, j: int) -> float:
        d = abs(rank[i] - rank[j])
        ndcg2 = abs(1 / math.log2(1 + d) - 1 / math.log2(2 + d))
        lambdarank = abs(1 / math.log2(1 + rank[i]) - 1 / math.log2(1 + rank[j]))
        return (10 * ndcg2 + lambdarank) * abs(gain[i] - gain[j])

    s = scores[0].tolist()
    terms = [weight(i, j) * math.log2(1 + math.exp(-(s[i] - s[j]))) for i, j in [(0, 1), (0, 2), (1, 2)]]
    assert loss.item() == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_margin_mse_regresses_the_teacher_margins():
    scores = torch.tensor([[2.0, 1.0, -1.0]], requires_grad=True)
    loss = losses.margin_mse(scores, torch.tensor([[5.0, 4.0, 0.0]]))
    # student margins [1, 3], teacher margins [1, 5]: errors [0, -2], mean square 2
    assert loss.item() == pytest.approx(2.0)
    loss.backward()  # d/ds_0 = mean 2 e_i = -2, d/ds_2 = -2 e_2 / 2 = 2
    assert torch.allclose(scores.grad, torch.tensor([[-2.0, 0.0, 2.0]]))


@pytest.mark.parametrize("name", losses.LOSSES)
def test_autograd_gradients_match_finite_differences(name):
    torch.manual_seed(0)
    scores = (torch.randn(3, 4, dtype=torch.float64) * 2).requires_grad_()
    relevance = torch.tensor([[2.0, 0, 1, 0], [1, 0, 0, -1], [3, 1, 0, 2]], dtype=torch.float64)
    teacher = torch.randn(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda s: losses.group_loss(name, s, relevance, teacher, temperature=0.7, sigma=1.3), (scores,)
    )


# ----- losses: sentence-transformers' loss modules on the same scores -----


def _st_losses():
    return pytest.importorskip("sentence_transformers.cross_encoder.losses")


def _table_cross_encoder(scores: torch.Tensor):
    """A sentence-transformers CrossEncoder whose score of (q{b}, d{b}-{i}) is ``scores[b, i]``."""
    from sentence_transformers.cross_encoder import CrossEncoder

    class TableCrossEncoder(CrossEncoder):
        def __init__(self, table):
            nn.Module.__init__(self)
            self.table = table

        def preprocess(self, pairs, **kwargs):
            return {"pairs": [tuple(pair) for pair in pairs]}

        def forward(self, features):
            return {"scores": torch.stack([self.table[pair] for pair in features["pairs"]])[:, None]}

        @property
        def device(self):
            return torch.device("cpu")

    batch, size = scores.shape
    table = {(f"q{b}", f"d{b}-{i}"): scores[b, i] for b in range(batch) for i in range(size)}
    queries = [f"q{b}" for b in range(batch)]
    return TableCrossEncoder(table), queries, [[f"d{b}-{i}" for i in range(size)] for b in range(batch)]


def _st_value(name: str, scores: torch.Tensor, relevance: torch.Tensor, teacher: torch.Tensor):
    st = _st_losses()
    model, queries, docs = _table_cross_encoder(scores)
    batch, size = scores.shape
    columns = [queries] + [[docs[b][i] for b in range(batch)] for i in range(size)]
    if name == "bce":
        pairs = [[q for q in queries for _ in range(size)], [d for group in docs for d in group]]
        return st.BinaryCrossEntropyLoss(model)(pairs, (relevance > 0).flatten().float())
    if name == "listwise":  # MNRL on one query at a time: its hard negatives, no in-batch negatives
        mnrl = st.MultipleNegativesRankingLoss(model, activation_fn=None, scale=1 / 0.5)
        per_query = [mnrl([[queries[b]]] + [[d] for d in docs[b]], None) for b in range(batch)]
        return torch.stack(per_query).mean()
    if name == "ranknet":
        return st.RankNetLoss(model)([queries, docs], list(relevance))
    if name == "lambdaloss":
        return st.LambdaLoss(model)([queries, docs], list(relevance))
    return st.MarginMSELoss(model)(columns, teacher)


@pytest.mark.parametrize("name", losses.LOSSES)
def test_each_loss_equals_sentence_transformers_loss_module_in_value_and_gradient(name):
    torch.manual_seed(1)
    raw = torch.randn(3, 5, dtype=torch.float64) * 3
    relevance = torch.tensor([[2.0, 0, 1, 0, 0], [1, 0, 0, 0, -1], [3, 1, 0, 2, 0]], dtype=torch.float64)
    teacher = torch.randn(3, 5, dtype=torch.float64)
    ours_scores, st_scores = raw.clone().requires_grad_(), raw.clone().requires_grad_()
    ours = losses.group_loss(name, ours_scores, relevance, teacher, temperature=0.5)
    theirs = _st_value(name, st_scores, relevance, teacher)
    ours.backward()
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)  # ST's listwise losses run in float32
    assert torch.allclose(ours_scores.grad, st_scores.grad.to(torch.float64), rtol=1e-4, atol=1e-6)


def test_listwise_with_temperature_one_is_listnet_with_a_one_hot_target():
    st = _st_losses()
    scores = torch.tensor([[0.3, 1.2, -0.4], [2.0, 0.1, 0.5]])
    model, queries, docs = _table_cross_encoder(scores)
    one_hot = [torch.tensor([100.0, 0.0, 0.0])] * 2  # softmax of the labels: (1, e^-100, e^-100)
    listnet = st.ListNetLoss(model)([queries, docs], one_hot)
    assert losses.listwise_ce(scores).item() == pytest.approx(listnet.item(), rel=1e-6)


def test_margin_mse_without_teacher_scores_and_an_unknown_loss_are_one_line_errors():
    scores = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="margin_mse needs teacher scores"):
        losses.group_loss("margin_mse", scores, scores)
    with pytest.raises(ValueError, match="unknown score loss 'mse'"):
        losses.group_loss("mse", scores, scores)


# ----- groups, tokenization, collator -----


def _row(candidates, labels, teacher=()):
    return {
        "query_id": "q1",
        "query": "tepo zadu",
        "candidates": [{"doc_id": d, "text": f"passage {d}"} for d in candidates],
        "labels": [{"doc_id": d, "relevance": r} for d, r in labels.items()],
        "teacher_scores": list(teacher),
    }


def test_groups_take_each_positive_with_the_first_hard_negatives_in_first_stage_order():
    task = get_task("yesno", positives_per_query=2)
    row = _row(["d0", "d1", "d2", "d3", "d4"], {"d1": 2, "d3": 1, "d2": 0}, teacher=[0.1, 0.9, 0.2, 0.8, 0.3])
    groups, skipped = score_groups(task, [row], num_negatives=2)
    assert not skipped
    by_id = {candidate["doc_id"]: candidate for candidate in row["candidates"]}
    members = [["d1", "d0", "d2"], ["d3", "d0", "d2"]]  # each positive, then the two highest-ranked negatives
    assert [group["prompts"] for group in groups] == [
        [task.scoring_prompt(task.pair_example(row, by_id[doc_id])) for doc_id in ids] for ids in members
    ]
    assert [g["relevance"] for g in groups] == [[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    assert [g["teacher_scores"] for g in groups] == [[0.9, 0.1, 0.2], [0.8, 0.1, 0.2]]
    assert score_groups(get_task("yesno"), [row], 2)[0][0]["relevance"] == [2.0, 0.0, 0.0]  # 1 positive


def test_rows_without_a_positive_or_enough_negatives_are_skipped_by_reason():
    task = get_task("yesno")
    rows = [_row(["d0", "d1"], {}), _row(["d0", "d1"], {"d0": 1}), _row(["d0", "d1", "d2"], {"d0": 1})]
    groups, skipped = score_groups(task, rows, num_negatives=2)
    assert len(groups) == 1 and not groups[0]["teacher_scores"]
    assert skipped == {"no_positive": 1, "too_few_negatives": 1}


def test_one_pair_rows_of_a_task_merge_back_into_one_row_per_query():
    task = get_task("yesno")
    row = _row(["d0", "d1", "d2"], {"d1": 1})
    pairs, _ = task.examples(row)  # rankrl synth's output: one row per (query, passage) pair
    other = {**_row(["e0", "e1"], {"e0": 1}), "query_id": "q2"}
    [merged, untouched] = query_rows([*pairs, other])
    assert merged["query_id"] == "q1" and untouched == other
    assert [c["doc_id"] for c in merged["candidates"]] == [p["candidates"][0]["doc_id"] for p in pairs]
    assert {label["doc_id"] for label in merged["labels"]} == {"d1"}
    assert score_groups(task, [merged], num_negatives=1)[0][0]["relevance"] == [1.0, 0.0]
