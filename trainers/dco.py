"""Direct Coverage Optimization (DCO): the confidence-limited SFT loss of Chen et al. 2025, "Rethinking
Fine-Tuning when Scaling Test-Time Compute: Limiting Confidence Improves Mathematical Reasoning" (arXiv
2502.07154, its DCO objective).

With p̂ = p(y | x) the model's probability of the target y, pass@N draws y at least once in N samples with
probability 1 − (1 − p̂)^N; DCO minimises the negative log of that coverage,

    ℓ_DCO^N = −log(1 − (1 − p̂)^N),      ∇ℓ_DCO^N = F(N, p̂) · ∇ℓ_CE,
    F(N, p̂) = N p̂ (1 − p̂)^(N−1) / (1 − (1 − p̂)^N),

with ℓ_CE = −log p̂. F = 1 at N = 1 (plain cross-entropy); for N > 1 it falls towards 0 once p̂ exceeds about
1/N, so examples the model already covers at N samples stop pushing it to more confidence. The paper picks
the training N' close to the pass@N used at test time.

:func:`dco_completion_loss` applies it to a batch of completions: per ``sequence`` (the paper's p̂ =
exp(sum of the completion tokens' log-probabilities)) or per ``token`` (rankrl's variant: the same formula on
each token's probability, averaged over tokens like cross-entropy).
"""

from __future__ import annotations

import math

import torch

GRANULARITIES = ("sequence", "token")
TAIL = -20.0  # below log(N p̂) = TAIL: ℓ = −log(N p̂) and F = 1, both within N p̂ / 2 < 1.1e-9
CONFIDENT = -1e-30  # log p̂ is clamped below this: at p̂ = 1 the exact form is log(0) (its gradient is 0 there)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x < 0, accurate at both ends (Mächler 2012); each branch sees only its own x, so
    neither puts an infinite gradient into :func:`torch.where`'s backward."""
    near = x > -math.log(2)
    middle = torch.full_like(x, -math.log(2))
    return torch.where(
        near,
        torch.log(-torch.expm1(torch.where(near, x, middle))),
        torch.log1p(-torch.exp(torch.where(near, middle, x))),
    )


def dco_loss(log_p: torch.Tensor, n: int) -> torch.Tensor:
    """Elementwise ℓ_DCO^N = −log(1 − (1 − p̂)^N) from ``log_p`` = log p̂ (arXiv 2502.07154).

    Its gradient is F(N, p̂) times cross-entropy's (:func:`dco_factor`); N = 1 is cross-entropy, −log p̂.
    Computed in float64 as −log1mexp(N · log1mexp(log p̂)); where N p̂ < e^-20 (long completions, whose p̂
    underflows) as its limit −log p̂ − log N. Finite, with finite gradients, for every log p̂ ≤ 0.
    """
    x = log_p.double()
    tail = x < TAIL - math.log(n)
    exact = -_log1mexp(n * _log1mexp(x.clamp(min=TAIL - math.log(n), max=CONFIDENT)))
    limit = -x.clamp(max=TAIL - math.log(n)) - math.log(n)
    return torch.where(tail, limit, exact).to(log_p.dtype)


def dco_factor(log_p: torch.Tensor, n: int) -> torch.Tensor:
    """F(N, p̂) = N p̂ (1 − p̂)^(N−1) / (1 − (1 − p̂)^N) in [0, 1], DCO's weight on cross-entropy's gradient."""
    x = log_p.detach().double().clamp(max=CONFIDENT)
    log_miss = _log1mexp(x)
    log_f = math.log(n) + x + (n - 1) * log_miss - _log1mexp(n * log_miss)
    tail = x < TAIL - math.log(n)
    return torch.where(tail, torch.ones_like(x), log_f.exp()).to(log_p.dtype)


def dco_completion_loss(
    token_log_probs: torch.Tensor, mask: torch.Tensor, n: int, granularity: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DCO summed over a batch of completions: ``(loss sum, items, factor sum)``.

    ``token_log_probs`` and ``mask`` are ``(batch, length)``: each completion token's log-probability and
    whether it is a completion token. ``sequence``: one item per completion with a token, log p̂ the sum of
    its tokens' log-probabilities; ``token``: one item per completion token. Divide the sums by the items
    counted over the whole batch for the mean; ``factor sum`` (no gradient) sums :func:`dco_factor`.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"DCO granularity {granularity!r}; expected one of {', '.join(GRANULARITIES)}")
    mask = mask.bool()
    if granularity == "sequence":
        token_log_probs = token_log_probs.masked_fill(~mask, 0.0).sum(dim=-1)
        mask = mask.any(dim=-1)
    log_p = token_log_probs.masked_fill(~mask, 0.0)
    losses = dco_loss(log_p, n).masked_fill(~mask, 0.0)
    factors = dco_factor(log_p, n).masked_fill(~mask, 0.0)
    return losses.sum(), mask.sum(), factors.sum()
