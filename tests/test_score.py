"""Score learning (``stage: score``) on the tiny model: tokenization and the collator's answer-position
scores, and training runs through ``rankrl train --smoke`` that learn, train a LoRA adapter, resume exactly,
score the same in ``rankrl eval`` and load as a sentence-transformers ``CrossEncoder`` with the same scores
(1e-4). The losses and score groups are in ``tests/test_score_losses.py``."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.generation import encode_prompt, single_token_ids
from rankrl.cli import main as cli
from rankrl.smoke import prepare_toy_workspace
from tasks import get_task
from trainers.cross_encoder import pair_chat_template, scoring_text
from trainers.score import GroupCollator, pair_scores, score_groups, tokenize_groups

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes/demo/score.yaml")
TASK_ARGS = {"max_passage_words": 6}  # short enough that the interop test's long passages are cut


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    task = get_task("yesno", **TASK_ARGS)
    return prepare_toy_workspace(tmp_path_factory.mktemp("toy"), task, num_train=64, num_heldout=8)


def _heldout_rows(workspace) -> list[dict]:
    return [json.loads(line) for line in workspace.heldout_path.read_text().splitlines()]


def test_collated_answer_position_scores_equal_a_forward_of_each_pair_alone(workspace):
    task = get_task("yesno", **TASK_ARGS)
    tokenizer = AutoTokenizer.from_pretrained(workspace.model_dir)
    model = AutoModelForCausalLM.from_pretrained(workspace.model_dir).eval()
    rows = _heldout_rows(workspace)
    rows[0]["candidates"][1]["text"] = "kavo " * 40  # one long pair: the others are left-padded a lot
    groups, _ = score_groups(task, rows[:3], num_negatives=2)
    tokenized, too_long = tokenize_groups(groups, tokenizer, max_length=None)
    assert too_long == 0 and len({len(ids) for g in tokenized for ids in g["input_ids"]}) > 2
    batch = GroupCollator(tokenizer.pad_token_id)(tokenized)
    assert batch["relevance"].shape == (3, 3) and (batch["attention_mask"][:, -1] == 1).all()
    yes, no = single_token_ids(tokenizer, task.answer_tokens)
    with torch.no_grad():
        batched = pair_scores(model, batch, [yes, no])
        alone = [model(torch.tensor([ids])).logits[0, -1] for g in tokenized for ids in g["input_ids"]]
    assert torch.allclose(batched, torch.stack([logits[yes] - logits[no] for logits in alone]), atol=1e-5)
    assert tokenized[0]["input_ids"][0] == encode_prompt(tokenizer, groups[0]["prompts"][0])
    shortest = min(len(ids) for g in tokenized for ids in g["input_ids"])
    assert len(tokenize_groups(groups, tokenizer, max_length=shortest)[0]) < len(tokenized)


def test_margin_mse_reads_the_rows_teacher_scores_and_refuses_rows_without(workspace, tmp_path):
    from core.data import write_dataset
    from core.recipe import RecipeError
    from trainers.configs import ScriptArguments
    from trainers.score import ScoreConfig, load_groups, score_dataset

    task, tokenizer = get_task("yesno", **TASK_ARGS), AutoTokenizer.from_pretrained(workspace.model_dir)
    args = ScoreConfig(output_dir=str(tmp_path), loss="margin_mse", num_negatives=2, use_cpu=True)
    with pytest.raises(RecipeError, match="margin_mse needs teacher_scores"):
        load_groups(task, ScriptArguments(dataset=str(workspace.heldout_path)), args)
    rows = _heldout_rows(workspace)
    for row in rows:
        row["teacher_scores"] = [float(i) for i in range(len(row["candidates"]))]
    write_dataset(rows, tmp_path / "teacher.jsonl")
    groups = load_groups(task, ScriptArguments(dataset=str(tmp_path / "teacher.jsonl")), args)
    batch = GroupCollator(tokenizer.pad_token_id)(list(score_dataset(groups, tokenizer, max_length=None)))
    assert batch["teacher_scores"].shape == batch["relevance"].shape == (len(rows), 3)


def test_the_pair_chat_template_renders_a_pair_as_the_scoring_prompt(workspace):
    tokenizer = AutoTokenizer.from_pretrained(workspace.model_dir)
    for task_args in ({"template": "qwen3_reranker"}, {"template": "prorank", "instruction": "Find\n it"}):
        task = get_task("yesno", max_passage_words=3, **task_args)
        template = pair_chat_template(tokenizer, task)
        pair = [{"role": "query", "content": 'a "q"\\'}, {"role": "document", "content": "w1\n w2\tw3 w4"}]
        rendered = tokenizer.apply_chat_template(pair, chat_template=template, tokenize=False)
        example = {"query": 'a "q"\\', "candidates": [{"doc_id": "d", "text": "w1 w2 w3"}], "labels": []}
        assert rendered == scoring_text(tokenizer, task.scoring_prompt(example))
        tokenizer.chat_template = template  # a second call replaces the pair branch, keeps the original
        assert pair_chat_template(tokenizer, task) == template


# ----- training through `rankrl train --smoke` -----

OVERRIDES = {
    "max_steps": 30,
    "per_device_train_batch_size": 8,
    "learning_rate": 1e-3,
    "save_strategy": "steps",
    "save_steps": 15,
    "save_total_limit": None,
    "task_args": TASK_ARGS,
}


def _train(monkeypatch, smoke_dir: Path, **overrides) -> Path:
    """``rankrl train recipes/demo/score.yaml --smoke key=value ...``; the output folder."""
    monkeypatch.setenv("RANKRL_SMOKE_DIR", str(smoke_dir))
    values = {**OVERRIDES, **overrides}
    cli(["train", RECIPE, "--smoke", *(f"{key}={json.dumps(value)}" for key, value in values.items())])
    return smoke_dir / "demo" / "score" / "score"


def _losses(output_dir: Path, step: int) -> list[float]:
    state = json.loads((output_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _train(monkeypatch, tmp_path_factory.mktemp("smoke"))


def test_smoke_run_changes_every_weight_matrix_and_lowers_the_loss(trained):
    [tiny] = trained.parents[2].glob("toy-yesno-*/tiny-model")  # the smoke workspace's start model
    base = load_file(tiny / "model.safetensors")
    weights = load_file(trained / "model.safetensors")
    assert all(not torch.equal(base[key], weights[key]) for key in base if base[key].ndim == 2)
    logged = _losses(trained, 30)
    assert len(logged) == 30 and sum(logged[-5:]) / 5 < 0.3 * sum(logged[:5]) / 5
    results = json.loads((trained / "all_results.json").read_text())
    assert results["eval_ndcg@10"] > 0.0  # the held-out evaluation ran with the yesno strategy


def _eval_scores(tmp_path: Path, model_dir: Path, rows: list[dict]) -> dict[tuple[str, str], float]:
    """``rankrl eval task=yesno`` over ``rows`` (as rank_llm requests): its score of each (query, passage)."""
    from evaluation import EvalConfig, run_eval
    from evaluation.outputs import write_rankllm_json

    requests = tmp_path / "requests.json"
    write_rankllm_json(
        requests, rows, {r["query_id"]: [c["doc_id"] for c in r["candidates"]] for r in rows}, {}
    )
    config = EvalConfig(
        model=str(model_dir),
        requests=str(requests),
        task="yesno",
        task_args=TASK_ARGS,
        output_dir=str(tmp_path / "eval"),
        batch_size=5,
        resume=False,
    )
    run_eval(config)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    return {(r["query"], hit["content"]): hit["score"] for r in results for hit in r["hits"]}


def _interop_rows(workspace) -> list[dict]:
    rows = _heldout_rows(workspace)[:4]
    rows[0]["candidates"][0]["text"] = "rekuvo  bado\n\tzile " * 5  # cut to 6 words, whitespace normalised
    return rows


def _assert_cross_encoder_matches_rankrl_eval(model_dir: Path, rows: list[dict], tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    expected = _eval_scores(tmp_path, model_dir, rows)
    pairs = list(expected)
    predicted = CrossEncoder(str(model_dir), device="cpu").predict(pairs, batch_size=4)
    assert max(abs(float(p) - expected[pair]) for pair, p in zip(pairs, predicted, strict=True)) < 1e-4
    assert len(set(expected.values())) > len(pairs) // 2  # the scores differ: a real comparison


def test_checkpoint_loads_as_a_sentence_transformers_cross_encoder_with_rankrl_eval_scores(
    trained, workspace, tmp_path
):
    pytest.importorskip("sentence_transformers")
    _assert_cross_encoder_matches_rankrl_eval(trained, _interop_rows(workspace), tmp_path)


def test_lora_run_trains_the_adapter_which_scores_the_same_in_both_tools(monkeypatch, workspace, tmp_path):
    pytest.importorskip("sentence_transformers")
    output_dir = _train(
        monkeypatch,
        tmp_path / "smoke",
        max_steps=6,
        save_strategy="no",
        use_peft=True,
        lora_r=4,
        lora_alpha=8,
        loss="lambdaloss",
        learning_rate=1e-2,
    )
    adapter = load_file(output_dir / "adapter_model.safetensors")
    lora_b = [tensor for key, tensor in adapter.items() if "lora_B" in key]
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b)  # lora_B starts at zero
    _assert_cross_encoder_matches_rankrl_eval(output_dir, _interop_rows(workspace), tmp_path)


def test_resuming_from_the_middle_checkpoint_ends_with_the_uninterrupted_weights(
    trained, monkeypatch, tmp_path, caplog
):
    """Train 30 steps saving at 15 and 30; drop checkpoint-30 and the final model; the same command resumes
    from checkpoint-15 (mid-epoch: 64 groups, 8 a step) and must end on the same weights."""
    caplog.set_level(logging.INFO, logger="rankrl")
    resumed = tmp_path / "smoke" / "demo" / "score" / "score"
    shutil.copytree(trained.parents[2], tmp_path / "smoke")  # the smoke folder
    shutil.rmtree(resumed / "checkpoint-30")
    (resumed / "model.safetensors").unlink()
    _train(monkeypatch, tmp_path / "smoke", resume=True)
    assert f"resuming from {resumed / 'checkpoint-15'}" in caplog.text
    reference, weights = load_file(trained / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max((weights[key] - reference[key]).abs().max().item() for key in reference) <= 1e-6
    assert _losses(resumed, 30)[15:] == pytest.approx(_losses(trained, 30)[15:], abs=1e-6)


SCURVY = [
    ("d0", "Scurvy was common among sailors on long voyages before the eighteenth century.", 0),
    ("d1", "Scurvy is caused by a prolonged lack of vitamin C in the diet.", 2),
    ("d2", "Vitamin D is made in the skin when it is exposed to sunlight.", 0),
    ("d3", "Citrus fruits were carried on ships from the 1790s onwards.", 0),
]
EXERCISE = [
    ("e0", "Marathon runners train for months before a race.", 0),
    ("e1", "Regular aerobic exercise lowers resting blood pressure in adults.", 1),
    ("e2", "High blood pressure has few symptoms.", 0),
]


def _english_rows() -> list[dict]:
    rows = []
    for query_id, query, docs in [
        ("q1", "What causes scurvy?", SCURVY),
        ("q2", "Does exercise lower blood pressure?", EXERCISE),
    ]:
        candidates = [{"doc_id": doc_id, "text": text} for doc_id, text, _ in docs]
        labels = [{"doc_id": doc_id, "relevance": grade} for doc_id, _, grade in docs if grade]
        rows.append({"query_id": query_id, "query": query, "candidates": candidates, "labels": labels})
    return rows


@pytest.mark.slow
def test_smollm2_lora_score_steps_score_the_same_in_rankrl_eval_and_sentence_transformers(
    smollm2_checkpoint, tmp_path
):
    """A real tokenizer and chat template (SmolLM2-135M-Instruct): the pair template's rendering and its
    tokens must match rankrl's prompt encoding for the scores to agree."""
    pytest.importorskip("sentence_transformers")
    from core.data import write_dataset
    from trainers import score
    from trainers.configs import build_stage_configs

    write_dataset(_english_rows(), tmp_path / "train.jsonl")
    recipe = {
        "stage": "score",
        "task": "yesno",
        "task_args": TASK_ARGS,
        "loss": "ranknet",
        "num_negatives": 2,
        "model_name_or_path": str(smollm2_checkpoint),
        "dataset": str(tmp_path / "train.jsonl"),
        "output_dir": str(tmp_path / "out"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-3,
        "use_peft": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "dtype": "float32",
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        "resume": False,
    }
    score.main(*build_stage_configs(recipe, "score.yaml"))
    adapter = load_file(tmp_path / "out" / "adapter_model.safetensors")
    assert all(tensor.abs().sum() > 0 for key, tensor in adapter.items() if "lora_B" in key)
    _assert_cross_encoder_matches_rankrl_eval(tmp_path / "out", _english_rows(), tmp_path)
