"""Score learning (``stage: score``): the losses against hand computation, autograd and sentence-transformers'
own loss modules; groups, tokenization and the collator's answer-position scores; and training runs on the
tiny model through ``rankrl train --smoke`` that learn, train a LoRA adapter, resume exactly, score the same
in ``rankrl eval`` and load as a sentence-transformers ``CrossEncoder`` with the same scores (1e-4)."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer

from core.generation import encode_prompt, single_token_ids
from rankrl.cli import main as cli
from rankrl.smoke import prepare_toy_workspace
from tasks import get_task
from trainers import score_losses as losses
from trainers.cross_encoder import pair_chat_template, scoring_text
from trainers.score import GroupCollator, pair_scores, score_groups, tokenize_groups

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "recipes/demo/score.yaml")
TASK_ARGS = {"max_passage_words": 6}  # short enough that the interop test's long passages are cut


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
    return smoke_dir / "score" / "score"


def _losses(output_dir: Path, step: int) -> list[float]:
    state = json.loads((output_dir / f"checkpoint-{step}" / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _train(monkeypatch, tmp_path_factory.mktemp("smoke"))


def test_smoke_run_changes_every_weight_matrix_and_lowers_the_loss(trained):
    [tiny] = trained.parent.parent.glob("toy-yesno-*/tiny-model")  # the smoke workspace's start model
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
    resumed = tmp_path / "smoke" / "score" / "score"
    shutil.copytree(trained.parent.parent, tmp_path / "smoke")
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
