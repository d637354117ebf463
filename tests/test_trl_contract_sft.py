"""Contract tests of :class:`trainers.trl_overrides.RankRLSFTTrainer`: DCO reads the per-token
log-probabilities of TRL's own SFT forward and replaces its loss (``tests/test_trl_contract.py`` says what a
failure means)."""

from __future__ import annotations

import pytest
import torch
import trl.trainer.utils as trl_utils
from datasets import Dataset
from trl import SFTConfig, SFTTrainer
from trl.kernels import chunked_logprob

from tests.trl_contract_setup import ONE_CPU_STEP, PROMPTS, tiny_contract_model
from trainers.dco import dco_loss
from trainers.trl_overrides import RankRLSFTTrainer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_contract_model(tmp_path_factory.mktemp("tiny"))


SFT_ROWS = [
    {"prompt": prompt, "completion": [{"role": "assistant", "content": f"[{i + 1}] > [{i}]"}]}
    for i, prompt in enumerate(PROMPTS)
]


def _sft(tiny_model, output_dir, trainer_class=SFTTrainer, config=None, **kwargs):
    args = SFTConfig(output_dir=str(output_dir), **{**ONE_CPU_STEP, **(config or {})})
    return trainer_class(model=tiny_model, args=args, train_dataset=Dataset.from_list(SFT_ROWS), **kwargs)


def _completion_nll(trainer, batch) -> torch.Tensor:
    """Each row's summed negative log-likelihood of its completion tokens, from the model's plain logits."""
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    log_probs = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    token = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(token * (labels != -100)).sum(dim=-1)


def test_dco_reads_the_token_log_probs_of_trls_own_forward(tiny_model, tmp_path):
    plain = _sft(tiny_model, tmp_path / "ce")
    batch = plain.data_collator([plain.train_dataset[i] for i in range(len(SFT_ROWS))])
    tokens = (batch["labels"][:, 1:] != -100).sum()
    nll = _completion_nll(plain, batch)
    cross_entropy = plain.compute_loss(plain.model, dict(batch)).item()
    assert cross_entropy == pytest.approx(nll.sum().item() / tokens.item(), rel=1e-5)  # TRL's mean token NLL
    for n, granularity, expected in [
        (1, "token", cross_entropy),
        (1, "sequence", nll.mean().item()),
        (4, "sequence", dco_loss(-nll, 4).mean().item()),
    ]:
        trainer = _sft(
            tiny_model, tmp_path / f"{granularity}{n}", RankRLSFTTrainer, dco_n=n, dco_granularity=granularity
        )
        loss = trainer.compute_loss(trainer.model, dict(batch))
        assert loss.requires_grad and loss.item() == pytest.approx(expected, rel=1e-5)


def test_dco_sequence_loss_is_the_step_mean_under_gradient_accumulation(tiny_model, tmp_path):
    accumulate = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}
    trainer = _sft(tiny_model, tmp_path, RankRLSFTTrainer, accumulate, dco_n=1, dco_granularity="sequence")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(SFT_ROWS))])
    nll = _completion_nll(trainer, batch)  # the step's four completions, before its update
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert logged["loss"] == pytest.approx(nll.mean().item(), rel=1e-4)
    assert logged["dco/factor"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("config", "clash"),
    [({"loss_type": "dft"}, "loss_type"), ({"label_smoothing_factor": 0.1}, "label_smoothing_factor")],
)
def test_dco_refuses_the_settings_that_replace_its_loss(tiny_model, tmp_path, config, clash):
    with pytest.raises(ValueError, match=f"DCO replaces the loss.*{clash}"):
        _sft(tiny_model, tmp_path, RankRLSFTTrainer, config, dco_n=4)


def test_the_fused_lm_head_projects_only_the_labelled_positions_on_cpu(tiny_model, tmp_path, monkeypatch):
    """TRL projects every position off CUDA; rankrl's trainers make it project only the labelled ones."""
    projected: list[int] = []
    project = trl_utils._ChunkedLogProbFunction.apply

    def counting(hidden, *args):
        projected.append(hidden.shape[0])
        return project(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", counting)
    monkeypatch.setattr(trl_utils, "_use_triton", chunked_logprob._use_triton)  # TRL's own, until rankrl's
    plain = _sft(tiny_model, tmp_path / "plain")
    batch = plain.data_collator([plain.train_dataset[i] for i in range(len(SFT_ROWS))])
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    positions = batch["labels"][:, 1:].numel()
    plain_loss = plain.compute_loss(plain.model, dict(batch)).item()
    trainer = _sft(tiny_model, tmp_path / "rankrl", RankRLSFTTrainer)
    loss = trainer.compute_loss(trainer.model, dict(batch)).item()
    assert projected[0] == positions > labelled, "TRL now compacts on CPU itself: drop rankrl's patch"
    assert projected[1] == labelled
    assert loss == pytest.approx(plain_loss, rel=1e-6)
