"""MRT's termination-baseline advantage (Qu et al. 2025, arXiv 2503.07572), ``advantage: termination``:
its values on hand-made rewards and baselines, the token after a prefix, the baseline of a scored batch drawn
at an episode boundary with a scripted sampler, its gradient through TRL's GRPO loss on a toy logit, the
recipe keys, and (slow) GRPO steps of the MRT recipe on the math toy task that move the weights."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset

from core.recipe import RecipeError
from core.tiny import build_tiny_model
from rankrl.cli import main
from rewards import get_reward
from rewards.progress import STOP_TEMPLATE
from tests.checkpoints import model_weights
from trainers.advantages import ScoredBatch, TerminationBaseline, covering_tokens, termination_advantages
from trainers.configs import build_stage_configs
from trainers.grpo import RankRLGRPOConfig, advantage_fn
from trainers.trl_overrides import RankRLGRPOTrainer

ROOT = Path(__file__).resolve().parents[1]
NAN = float("nan")
# A character-level stand-in tokenizer: token i is chr(i), so a prefix of n characters is n tokens.
CHARS = SimpleNamespace(decode=lambda ids, skip_special_tokens=True: "".join(map(chr, ids)))
# 22 paragraphs: "Wait" opens paragraphs 2, 4, ..., 20, so 11 episodes, merged by MRT's 10 into two:
# paragraphs 0-19 and 20-21. The drawn boundary j* is 0 (the empty prefix) or 1 (PREFIX_1).
PARAGRAPHS = ["<think>Begin", "x = 2"] + [p for i in range(1, 11) for p in (f"Wait, try {i}", f"so {i}")]
TRACE = "\n\n".join(PARAGRAPHS) + "</think> <answer>4</answer>"
PREFIX_1 = "\n\n".join(PARAGRAPHS[:20]) + "\n\n"


def test_termination_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 1.0, NAN])
    baselines = torch.tensor([0.25, 0.5, 1.0, 0.3])
    advantages = termination_advantages(rewards, baselines, torch.tensor([0, 2, 1, 0]), width=4)
    assert advantages.tolist() == [
        [0.75, 0.75, 0.75, 0.75],  # R − b on every token after an empty prefix
        [0.0, 0.0, -0.5, -0.5],  # nothing on the two prefix tokens the baseline was forced after
        [0.0, 0.0, 0.0, 0.0],  # stopping at the boundary did as well as continuing
        [0.0, 0.0, 0.0, 0.0],  # unscorable (every reward None): no signal, as in TRL
    ]


def test_covering_tokens_finds_the_first_token_after_a_prefix():
    text = "abc\n\nWait"
    assert covering_tokens(CHARS, [ord(c) for c in text], "abc\n\n") == 5
    assert covering_tokens(CHARS, [ord(c) for c in text], "") == 0
    assert covering_tokens(CHARS, [ord(c) for c in text], text) == len(text)
    pieces = SimpleNamespace(
        decode=lambda ids, skip_special_tokens=True: "".join(["ab", "c\n", "\nWa", "it"][i] for i in ids)
    )
    assert covering_tokens(pieces, [0, 1, 2, 3], "abc\n\n") == 3  # "\nWa" straddles the boundary: prefix


def scripted_generate(calls):
    """The policy stand-in: every forced answer is 4 once the prefix has reached "try 9", else 7."""

    def generate(prompts, prefixes, *, num_samples, temperature, top_p, max_new_tokens):
        calls.append((list(prompts), list(prefixes), num_samples, temperature, top_p, max_new_tokens))
        return [[r"\boxed{4}" if "try 9" in p else r"\boxed{7}"] * num_samples for p in prefixes]

    return generate


def test_termination_baseline_forces_an_answer_at_a_drawn_boundary():
    calls, logged = [], {}
    rewards = [1.0, 0.0, 0.5, NAN, 1.0, 0.0, 0.5, 1.0]
    ids = [ord(c) for c in TRACE]
    batch = ScoredBatch(
        prompts=["x + x = 4?"] * 8, completions=[TRACE] * 8, completion_ids=[ids] * 8,
        columns={"answer": ["4"] * 8}, rewards=torch.tensor(rewards), width=len(ids) + 3, tokenizer=CHARS,
        generate=scripted_generate(calls), seed="3-0-0", log=logged.__setitem__,
    )  # fmt: skip
    advantages = TerminationBaseline(num_samples=3, temperature=0.9, top_p=1.0, max_new_tokens=64)(batch)
    # j* = 0: b = 0 (nothing written yet), from token 0; j* = 1: b = 1 (the answer after "try 9"), from the
    # first token after PREFIX_1; padding columns included.
    drawn = []
    for reward, row in zip(rewards, advantages.tolist(), strict=True):
        gap = 0.0 if reward != reward else reward
        at_start = [gap] * len(row)
        at_prefix = [0.0] * len(PREFIX_1) + [0.0 if reward != reward else reward - 1.0] * (
            len(row) - len(PREFIX_1)
        )
        assert row in (at_start, at_prefix)
        drawn.append(row == at_prefix and row != at_start)
    assert any(drawn) and not all(drawn)  # seed 3-0-0 draws both boundaries
    [(prompts, prefixes, num_samples, temperature, top_p, max_new_tokens)] = calls  # one collective call
    assert prefixes == [STOP_TEMPLATE, PREFIX_1 + STOP_TEMPLATE] or prefixes == [
        PREFIX_1 + STOP_TEMPLATE,
        STOP_TEMPLATE,
    ]
    assert prompts == ["x + x = 4?"] * 2 and (num_samples, temperature, top_p, max_new_tokens) == (
        3,
        0.9,
        1.0,
        64,
    )
    assert 0 < logged["mrt/termination_baseline"] < 1 and 0 < logged["mrt/baseline_prefix_tokens"] < len(
        PREFIX_1
    )


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """rankrl's GRPO trainer on a tiny model with TRL's per-completion token-mean loss and no KL."""
    folder = tmp_path_factory.mktemp("mrt")
    model = build_tiny_model(folder / "model", ["1 plus 1 is 2", "2 plus 2 is 4"] * 8)
    args = RankRLGRPOConfig(
        output_dir=str(folder / "out"), loss_type="grpo", beta=0.0, num_generations=2,
        per_device_train_batch_size=2, max_completion_length=8, use_cpu=True, bf16=False, report_to="none",
    )  # fmt: skip
    rows = [{"prompt": [{"role": "user", "content": "1 plus 1"}], "answer": "2"}] * 2
    return RankRLGRPOTrainer(
        model=str(model),
        reward_funcs=[get_reward("answer_match")],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )


def test_grpo_loss_gradient_is_minus_advantage_times_grad_logp_on_a_toy_logit(trainer, monkeypatch):
    # Toy policy: completion token t of row i has logits θ[i, t] over 5 tokens; its log-probability is
    # log_softmax(θ[i, t])[y_it]. TRL's GRPO loss (loss_type grpo, β = 0, on-policy) is
    # −(1/B) Σ_i Σ_t m_it A_it exp(logp_it − sg(logp_it)) / Σ_t m_it, so its gradient in θ[i, t] is
    # −A_it m_it / (B Σ_t m_it) · (onehot(y_it) − softmax(θ[i, t])).
    torch.manual_seed(0)
    theta = torch.randn(2, 3, 5, requires_grad=True)
    y = torch.tensor([[1, 4, 2], [0, 3, 3]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages = termination_advantages(
        torch.tensor([1.0, 0.0]), torch.tensor([0.25, 0.75]), torch.tensor([1, 0]), width=3
    )
    assert advantages.tolist() == [[0.0, 0.75, 0.75], [-0.75, -0.75, -0.75]]

    def toy_logps(model, input_ids, attention_mask, logits_to_keep, **kwargs):
        logps = torch.log_softmax(theta, dim=-1).gather(-1, y[..., None])[..., 0]
        return logps, torch.zeros_like(logps), None

    monkeypatch.setattr(trainer, "_get_per_token_logps_and_entropies", toy_logps)
    monkeypatch.setattr(trainer, "current_gradient_accumulation_steps", 1, raising=False)
    prompt = torch.ones(2, 1, dtype=torch.long)
    inputs = {
        "prompt_ids": prompt, "prompt_mask": prompt, "completion_ids": y, "completion_mask": mask,
        "advantages": advantages, "num_items_in_batch": mask.sum(),
    }  # fmt: skip
    loss = trainer._compute_loss(trainer.model, inputs)
    assert loss.item() == pytest.approx(-((0.75 + 0.75) / 3 + (-0.75 - 0.75) / 2) / 2)
    loss.backward()
    onehot = torch.nn.functional.one_hot(y, 5).float()
    softmax = torch.softmax(theta.detach(), dim=-1)
    scale = torch.tensor([[0.0, 0.75 / 3, 0.75 / 3], [-0.75 / 2, -0.75 / 2, 0.0]]) / 2
    assert torch.allclose(theta.grad, -scale[..., None] * (onehot - softmax), atol=1e-7)


def test_advantage_keys_of_a_grpo_recipe(tmp_path):
    recipe = {"stage": "grpo", "output_dir": str(tmp_path), "use_cpu": True, "report_to": "none"}
    keys = {"advantage": "termination", "temperature": 0.9, "max_completion_length": 48}
    _, args, _ = build_stage_configs({**recipe, **keys}, "r.yaml")
    assert isinstance(args, RankRLGRPOConfig) and args.advantage == "termination"
    baseline = advantage_fn(args, ["prompt", "answer"])  # K = 8 and the completion budget by default
    assert baseline.settings == {"num_samples": 8, "temperature": 0.9, "top_p": 1.0, "max_new_tokens": 48}
    keys.update(termination_samples=2, termination_max_new_tokens=16, top_p=0.95)
    _, args, _ = build_stage_configs({**recipe, **keys}, "r.yaml")
    baseline = advantage_fn(args, ["answer"])
    assert baseline.settings == {"num_samples": 2, "temperature": 0.9, "top_p": 0.95, "max_new_tokens": 16}
    _, args, _ = build_stage_configs({**recipe, **keys, "termination_max_new_tokens": 4096}, "r.yaml")
    assert advantage_fn(args, ["answer"]).settings["max_new_tokens"] == 48  # never above the completion's
    _, plain, _ = build_stage_configs(recipe, "r.yaml")
    assert advantage_fn(plain, ["prompt"]) is None  # group_mean: TRL's own advantages
    with pytest.raises(RecipeError, match="'answer' column"):
        advantage_fn(args, ["prompt"])
    with pytest.raises(RecipeError, match="expected one of group_mean, termination"):
        build_stage_configs({**recipe, "advantage": "progress"}, "r.yaml")


@pytest.mark.slow
def test_mrt_recipe_grpo_steps_with_the_termination_baseline_move_the_weights(smoke_dir):
    """SFT on the toy math task (so some answers are right), then the MRT recipe's GRPO stage with --smoke."""
    math = ["task=math", 'task_args={"use_system_prompt": false}']
    sft = ["max_steps=30", "per_device_train_batch_size=12", "learning_rate=3e-3", "logging_steps=5"]
    main(["train", "recipes/demo/sft.yaml", "--smoke", *math, *sft])
    start = smoke_dir / "demo" / "sft" / "sft"
    grpo = ["num_generations=8", "per_device_train_batch_size=16", "temperature=1.0", "termination_samples=2"]
    main(["train", "recipes/mrt/deepscaler-1.5b-grpo.yaml", "--smoke", f"model_name_or_path={start}", *grpo])
    output = smoke_dir / "mrt" / "deepscaler-1.5b-grpo" / "grpo"
    before, after = model_weights(start), model_weights(output)
    assert [name for name, tensor in after.items() if not torch.equal(tensor, before[name])]
    history = json.loads((output / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "mrt/termination_baseline" in entry]
    assert len(logged) == 2 and all(0 <= entry["mrt/termination_baseline"] <= 1 for entry in logged)
    assert any(
        entry["rewards/answer_match/std"] > 0 for entry in history if "rewards/answer_match/std" in entry
    )
