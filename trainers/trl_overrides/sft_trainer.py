"""rankrl's ``SFTTrainer``, whose loss can be DCO and whose LM head projects only labelled positions on CPU
(see the package docstring for the TRL internals it relies on)."""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer

from trainers.dco import dco_completion_loss
from trainers.trl_overrides.internals import log_metric, project_labelled_positions_only


class RankRLSFTTrainer(SFTTrainer):
    """``SFTTrainer`` with DCO, −log(1 − (1 − p̂)^N) (:mod:`trainers.dco`), as the loss when ``dco_n`` is set.

    ``token``: the per-token losses are summed and divided by TRL's cross-entropy denominator (the batch's
    completion tokens, ``num_items_in_batch``, with TRL's scaling across devices), so N = 1 is TRL's loss.
    ``sequence``: the mean over the micro-batch's completions, divided by the gradient accumulation steps
    when the Trainer leaves that division to the loss (``num_items_in_batch`` set), as TRL treats its MoE
    auxiliary loss. Logs ``dco/factor``, the mean weight F(N, p̂) on the cross-entropy gradient.

    Relies on ``SFTTrainer.compute_loss`` calling ``model(**inputs, fused_lm_head=True)`` once with
    gradients (no ``compute_loss_func`` and no label smoothing, which it refuses), whose output has
    ``log_probs`` and ``label_mask`` (TRL's ``FusedCausalLMOutput``, zero where the label is -100); on
    ``aux_loss_enabled`` and ``padding_free`` (SFTTrainer) and ``current_gradient_accumulation_steps``
    (transformers' Trainer).
    """

    def __init__(self, *args: Any, dco_n: int | None = None, dco_granularity: str = "sequence", **kwargs):
        project_labelled_positions_only()
        super().__init__(*args, **kwargs)
        self.dco_n, self.dco_granularity = dco_n, dco_granularity
        if dco_n is None:
            return
        clashes = {
            "loss_type": self.args.loss_type != "nll",
            "label_smoothing_factor": self.args.label_smoothing_factor > 0,
            "compute_loss_func": self.compute_loss_func is not None,
            "a MoE router auxiliary loss": self.aux_loss_enabled,
            "packing (sequence granularity)": dco_granularity == "sequence"
            and (self.args.packing or self.padding_free),
        }
        refused = [name for name, clash in clashes.items() if clash]
        if refused:
            raise ValueError(
                f"dco_n is set: DCO replaces the loss, so it cannot be used with {', '.join(refused)}"
            )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.dco_n is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        result, outputs = self._forward_outputs(model, inputs, return_outputs, num_items_in_batch)
        total, items, factors = dco_completion_loss(
            outputs.log_probs, outputs.label_mask, self.dco_n, self.dco_granularity
        )
        training = self.model.training
        log_metric(self, "train" if training else "eval", "dco/factor", (factors / items.clamp(min=1)).item())
        if self.dco_granularity == "token":
            count = items if num_items_in_batch is None else num_items_in_batch
            loss = total / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        else:
            scaled = training and num_items_in_batch is not None  # the Trainer will not divide by the steps
            loss = total / items.clamp(min=1) / (self.current_gradient_accumulation_steps if scaled else 1)
        return (loss, result[1]) if return_outputs else loss

    def _forward_outputs(self, model: Any, inputs: Any, *args: Any) -> tuple[Any, Any]:
        """TRL's ``compute_loss`` result and the output of its fused forward (caught by a forward hook)."""
        captured: list[Any] = []
        hook = model.register_forward_hook(lambda module, args, output: captured.append(output))
        try:
            result = super().compute_loss(model, inputs, *args)
        finally:
            hook.remove()
        outputs = next((out for out in captured if getattr(out, "log_probs", None) is not None), None)
        if outputs is None:
            raise RuntimeError(
                "DCO found no per-token log_probs in SFTTrainer's forward: TRL's compute_loss changed "
                "(see tests/test_trl_contract.py)"
            )
        return result, outputs
