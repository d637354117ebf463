"""Ranking losses on pair scores s(q, d) = logit(yes) - logit(no) (score learning, ``stage: score``).

Every loss takes a ``(B, G)`` tensor of scores: B groups, each one query's positive in column 0 followed by
its G - 1 hard negatives, with the same-shaped relevance grades (and teacher scores for distillation). The
formulas are sentence-transformers' cross-encoder losses (``sentence_transformers.cross_encoder.losses``) with
their default options and an identity activation, so a score-trained checkpoint means what a
``CrossEncoderTrainer`` run with that loss would; ``tests/test_score.py`` checks each against its module.
ProRank (arXiv 2506.03487) fine-tunes s = logit("1") - logit("0") this way after its GRPO warm-up;
which loss it used is not published, hence the choice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def pointwise_bce(scores: Tensor, relevance: Tensor) -> Tensor:
    """Binary cross-entropy of each pair's score as a logit against "relevant" (relevance > 0):

        L = mean_{b,i} [ -y log sigmoid(s) - (1 - y) log(1 - sigmoid(s)) ],  y = 1[rel > 0]

    monoT5's objective (arXiv 2003.06713) on the log-odds; sentence-transformers'
    ``BinaryCrossEntropyLoss``."""
    return F.binary_cross_entropy_with_logits(scores, (relevance > 0).to(scores.dtype))


def listwise_ce(scores: Tensor, temperature: float = 1.0) -> Tensor:
    """Softmax cross-entropy of the positive (column 0) against its group's hard negatives (InfoNCE):

        L = mean_b [ -log( exp(s_b0 / T) / sum_i exp(s_bi / T) ) ]

    sentence-transformers' ``MultipleNegativesRankingLoss`` with hard negatives, ``scale = 1 / T``, no
    activation and no in-batch negatives (a cross-encoder pays one forward per extra pair); with T = 1 it is
    ``ListNetLoss`` with a one-hot target."""
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, target)


def ranknet(scores: Tensor, relevance: Tensor, sigma: float = 1.0) -> Tensor:
    """Pairwise logistic loss (RankNet, Burges et al. 2005) over every pair of a group with different grades:

        L = -(1 / |P|) sum_{(i, j) in P} log2 sigmoid(sigma (s_i - s_j)),  P = {(i, j): rel_i > rel_j}

    averaged over the pairs of the whole batch; sentence-transformers' ``RankNetLoss``."""
    return _lambda_pairs(scores, relevance, sigma, weighted=False)


def lambdaloss(scores: Tensor, relevance: Tensor, sigma: float = 1.0) -> Tensor:
    """LambdaLoss with the NDCG-Loss2++ weighting (Wang et al., CIKM 2018, Sec. 4-5): RankNet's pair terms
    weighted by how much swapping the pair moves NDCG, with documents at their predicted ranks r = 1..G:

        G_i = (2^rel_i - 1) / maxDCG,   D(r) = log2(1 + r)
        w_ij = 10 |1/D(|r_i - r_j|) - 1/D(|r_i - r_j| + 1)| |G_i - G_j|  +  |1/D(r_i) - 1/D(r_j)| |G_i - G_j|
        L = -(1 / |P|) sum_{(i, j) in P} w_ij log2 sigmoid(sigma (s_i - s_j))

    (negative grades count as 0 in the gains); sentence-transformers' ``LambdaLoss`` defaults
    (``NDCGLoss2PPScheme(mu=10)``, all ranks, binary log)."""
    return _lambda_pairs(scores, relevance, sigma, weighted=True)


def margin_mse(scores: Tensor, teacher_scores: Tensor) -> Tensor:
    """Margin-MSE distillation (Hofstaetter et al., arXiv 2010.02666): the student's positive-negative margins
    regress the teacher's,

        L = mean_{b,i>0} ( (s_b0 - s_bi) - (t_b0 - t_bi) )^2

    sentence-transformers' ``MarginMSELoss`` with one positive and n negatives."""
    student = scores[:, :1] - scores[:, 1:]
    teacher = teacher_scores[:, :1] - teacher_scores[:, 1:]
    return F.mse_loss(student, teacher.to(student.dtype))


def _lambda_pairs(scores: Tensor, relevance: Tensor, sigma: float, weighted: bool) -> Tensor:
    """The LambdaLoss framework shared by RankNet (weights 1) and NDCG-Loss2++ (docstrings above)."""
    scores_sorted, order = scores.sort(descending=True, dim=-1)
    grades = relevance.to(scores.dtype).gather(1, order)
    pairs = grades[:, :, None] - grades[:, None, :] > 0
    if weighted:
        weights = _ndcg_loss2pp_weights(grades.clamp(min=0), relevance.to(scores.dtype).clamp(min=0))
    else:
        weights = torch.ones_like(pairs, dtype=scores.dtype)
    logits = sigma * (scores_sorted[:, :, None] - scores_sorted[:, None, :])
    losses = -weights * F.logsigmoid(logits) / math.log(2)
    return losses[pairs].sum() / max(int(pairs.sum()), 1)


def _ndcg_loss2pp_weights(grades: Tensor, relevance: Tensor, mu: float = 10.0, eps: float = 1e-10) -> Tensor:
    """w_ij of :func:`lambdaloss` for ``grades`` in predicted order (``relevance``, any order: maxDCG)."""
    ranks = torch.arange(1, grades.shape[1] + 1, device=grades.device, dtype=grades.dtype)
    discount = torch.log2(1 + ranks)
    ideal = relevance.sort(descending=True, dim=-1).values
    max_dcg = ((2**ideal - 1) / discount).sum(dim=-1).clamp(min=eps)
    gains = (2**grades - 1) / max_dcg[:, None]
    gain_gaps = (gains[:, :, None] - gains[:, None, :]).abs()
    distance = (ranks[:, None] - ranks[None, :]).abs()
    ndcg2 = (1 / torch.log2(1 + distance) - 1 / torch.log2(2 + distance)).abs()
    ndcg2.fill_diagonal_(0)
    lambdarank = (1 / discount[:, None] - 1 / discount[None, :]).abs()
    return (mu * ndcg2[None] + lambdarank[None]) * gain_gaps


LOSSES = ("bce", "listwise", "ranknet", "lambdaloss", "margin_mse")


def group_loss(
    name: str,
    scores: Tensor,
    relevance: Tensor,
    teacher_scores: Tensor | None = None,
    temperature: float = 1.0,
    sigma: float = 1.0,
) -> Tensor:
    """The loss ``name`` (one of :data:`LOSSES`) of ``(B, G)`` group scores."""
    if name == "bce":
        return pointwise_bce(scores, relevance)
    if name == "listwise":
        return listwise_ce(scores, temperature)
    if name == "ranknet":
        return ranknet(scores, relevance, sigma)
    if name == "lambdaloss":
        return lambdaloss(scores, relevance, sigma)
    if name == "margin_mse":
        if teacher_scores is None:
            raise ValueError("loss margin_mse needs teacher scores (the rows' teacher_scores)")
        return margin_mse(scores, teacher_scores)
    raise ValueError(f"unknown score loss {name!r}; expected one of {', '.join(LOSSES)}")
