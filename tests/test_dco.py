"""DCO, the confidence-limited SFT loss −log(1 − (1 − p̂)^N) of arXiv 2502.07154 (:mod:`trainers.dco`).

Values against hand computation on a three-token completion (token probabilities 0.5, 0.8, 0.25, so
p̂ = 0.1); N = 1 against cross-entropy, per sequence and per token; gradients against autograd of the naive
formula and against F(N, p̂) times cross-entropy's gradient through a softmax; finite values and gradients at
p̂ → 1 and p̂ → 0; and an SFT run of the recipe in recipes/dco on the toy math task.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rankrl.cli import main
from rankrl.smoke import shared_toy_workspace
from tasks import get_task
from tests.checkpoints import model_weights
from trainers.dco import dco_completion_loss, dco_factor, dco_loss

ROOT = Path(__file__).resolve().parents[1]
PROBS = [0.5, 0.8, 0.25]  # one completion's token probabilities: p̂ = 0.5 * 0.8 * 0.25 = 0.1
GARBAGE = -3.0  # log-probability at positions that are not completion tokens: must not count


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows: the three-token completion after a prompt position, a one-token completion (p = 0.5)
    and a completion truncated to nothing."""
    log_probs = torch.tensor(
        [[GARBAGE, *map(math.log, PROBS)], [GARBAGE, GARBAGE, math.log(0.5), GARBAGE], [GARBAGE] * 4],
        dtype=torch.float64,
    )
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    return log_probs, mask


def test_sequence_values_match_hand_computation():
    # N = 4: 1 - 0.9^4 = 1 - 0.6561 = 0.3439, -ln 0.3439 = 1.067404; F = 4 * 0.1 * 0.9^3 / 0.3439 = 0.847921.
    assert dco_loss(torch.tensor(math.log(0.1)), 4).item() == pytest.approx(1.067404, abs=1e-6)
    assert dco_factor(torch.tensor(math.log(0.1)), 4).item() == pytest.approx(0.847921, abs=1e-6)
    # The second row: 1 - 0.5^4 = 0.9375, -ln 0.9375 = 0.064539; rows without tokens are not items.
    total, items, factors = dco_completion_loss(*_batch(), n=4, granularity="sequence")
    assert items.item() == 2
    assert total.item() == pytest.approx(1.067404 + 0.064539, abs=1e-6)
    # F(4, 0.5) = 4 * 0.5 * 0.125 / 0.9375 = 0.266667
    assert factors.item() == pytest.approx(0.847921 + 0.266667, abs=1e-6)


def test_token_values_match_hand_computation():
    # N = 2 per token: -ln(1 - (1 - p)^2) = -ln(p (2 - p)): p = 0.5 -> -ln 0.75 = 0.287682,
    # 0.8 -> -ln 0.96 = 0.040822, 0.25 -> -ln 0.4375 = 0.826679; F = 2 (1 - p) / (2 - p): 2/3, 1/3, 6/7.
    total, items, factors = dco_completion_loss(*_batch(), n=2, granularity="token")
    assert items.item() == 4  # three tokens of the first row, one of the second
    assert total.item() == pytest.approx(0.287682 + 0.040822 + 0.826679 + 0.287682, abs=1e-6)
    assert factors.item() == pytest.approx(2 / 3 + 1 / 3 + 6 / 7 + 2 / 3, abs=1e-6)


def test_n1_is_cross_entropy_per_sequence_and_per_token():
    # Sequence CE: -ln 0.1 = 2.302585 and -ln 0.5 = 0.693147, mean over the two completions.
    total, items, factors = dco_completion_loss(*_batch(), n=1, granularity="sequence")
    assert (total / items).item() == pytest.approx((2.302585 + 0.693147) / 2, abs=1e-6)
    assert factors.item() == pytest.approx(2.0)
    # Token CE as TRL averages it: -(ln 0.5 + ln 0.8 + ln 0.25 + ln 0.5) / 4 tokens.
    total, items, _ = dco_completion_loss(*_batch(), n=1, granularity="token")
    assert (total / items).item() == pytest.approx((0.693147 + 0.223144 + 1.386294 + 0.693147) / 4, abs=1e-6)
    log_p = torch.linspace(-40.0, -1e-6, 101, dtype=torch.float64)
    assert torch.allclose(dco_loss(log_p, 1), -log_p, rtol=1e-12, atol=0)


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_gradient_matches_autograd_of_the_naive_formula(n):
    log_p = torch.linspace(-6.0, -0.05, 40, dtype=torch.float64, requires_grad=True)
    (stable,) = torch.autograd.grad(dco_loss(log_p, n).sum(), log_p)
    naive_loss = -torch.log(1 - (1 - log_p.exp()) ** n)
    (naive,) = torch.autograd.grad(naive_loss.sum(), log_p)
    assert torch.allclose(dco_loss(log_p, n), naive_loss, rtol=1e-9, atol=1e-12)
    assert torch.allclose(stable, naive, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("n", "granularity"), [(1, "sequence"), (4, "sequence"), (16, "sequence"), (3, "token")]
)
def test_gradient_on_the_logits_is_f_times_cross_entropy_s(n, granularity):
    generator = torch.Generator().manual_seed(0)
    logits = (2 * torch.randn(3, 5, generator=generator, dtype=torch.float64)).requires_grad_()
    targets = torch.tensor([[1], [4], [0]])
    token_log_probs = torch.log_softmax(logits, dim=-1).gather(1, targets).T  # one completion of 3 tokens
    mask = torch.ones_like(token_log_probs, dtype=torch.bool)
    total, _, _ = dco_completion_loss(token_log_probs, mask, n, granularity)
    (dco_grad,) = torch.autograd.grad(total, logits, retain_graph=True)
    (ce_grad,) = torch.autograd.grad(-token_log_probs.sum(), logits)
    p = token_log_probs.detach().exp() if granularity == "token" else token_log_probs.detach().sum().exp()
    factor = n * p * (1 - p) ** (n - 1) / (1 - (1 - p) ** n)  # F(N, p), the paper's formula
    assert torch.allclose(dco_factor(torch.log(p), n), factor, rtol=1e-9)
    weights = factor.reshape(3, 1) if granularity == "token" else factor
    assert torch.allclose(dco_grad, weights * ce_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n", [1, 64, 4096])
def test_finite_values_and_gradients_at_both_ends(n):
    log_p = torch.tensor([0.0, -1e-30, -1e-7, -30.0, -120.0, -800.0, -1e5], requires_grad=True)
    loss = dco_loss(log_p, n)
    (grad,) = torch.autograd.grad(loss.sum(), log_p)
    factor = dco_factor(log_p, n)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all() and torch.isfinite(factor).all()
    assert ((factor >= 0) & (factor <= 1)).all()
    assert loss[0].item() == pytest.approx(0.0, abs=1e-6)  # p̂ = 1: every sample is the target
    tail = log_p.detach()[3:]  # p̂ -> 0: ℓ -> -log(N p̂) and the gradient is cross-entropy's
    assert torch.allclose(loss[3:], -tail - math.log(n), rtol=1e-6)
    assert torch.allclose(grad[3:], torch.full_like(tail, -1.0))
    if n > 1:  # confident completions stop pulling: F(N, p̂) -> 0 as p̂ -> 1
        assert grad[:2].abs().max().item() == 0.0 and factor[:3].max().item() < 1e-3


@pytest.mark.slow
def test_sft_with_dco_on_toy_math_lowers_the_loss_and_moves_every_weight(smoke_dir):
    recipe = "recipes/dco/qwen2.5-1.5b-sft.yaml"  # dco_n 64 per sequence
    steps = ["max_steps=30", "per_device_train_batch_size=12", "learning_rate=3e-3", "logging_steps=5"]
    main(["train", recipe, "--smoke", *steps])
    folder = smoke_dir / "dco" / "qwen2.5-1.5b-sft"
    start = shared_toy_workspace(get_task("math", use_system_prompt=True)).model_dir  # what --smoke trained
    before, after = model_weights(start), model_weights(folder / "sft")
    assert [name for name in after if torch.equal(after[name], before[name])] == []
    history = json.loads((folder / "sft" / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss" in entry]
    assert len(logged) == 6 and logged[-1]["loss"] < logged[0]["loss"]
    assert all(0 < entry["dco/factor"] <= 1 for entry in logged)
