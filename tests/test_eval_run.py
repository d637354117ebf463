"""``rankrl eval`` end to end: every strategy on the tiny model, metrics against pytrec_eval, outputs read
back by pytrec_eval and rank_llm's reader, bad input, the CLI, and the real DL19 / SciFact baselines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import pytrec_eval

from core.data import DataError
from core.sources import read_corpus, read_rankllm_requests, read_run_file, read_trec
from evaluation import EvalConfig, run_eval
from evaluation.outputs import mean_metrics, per_query_metrics, write_trec_run
from rankrl.cli import main
from tests.oracles import FunctionBackend
from tests.toy_benchmark import build_toy_model, write_toy_benchmark

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
MEASURES = {"ndcg_cut_1", "ndcg_cut_5", "ndcg_cut_10", "recall_10", "recall_100", "recip_rank", "map"}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_toy_benchmark(tmp_path_factory.mktemp("bench"), num_queries=6, num_candidates=30)


@pytest.fixture(scope="module")
def model(tmp_path_factory, bench):
    return str(build_toy_model(tmp_path_factory.mktemp("model"), bench))


def config(bench, out, **settings) -> EvalConfig:
    paths = dict(
        run=str(bench.run), topics=str(bench.topics), corpus=str(bench.corpus), qrels=str(bench.qrels)
    )
    return EvalConfig(output_dir=str(out), **{"max_new_tokens": 8, **paths, **settings})


def pytrec_means(run_path: Path, qrels_path: Path, threshold: int = 1) -> dict[str, float]:
    """pytrec_eval over the written run, averaged over every qrels query (0 for those the run lacks)."""
    with open(qrels_path) as handle:
        qrels = pytrec_eval.parse_qrel(handle)
    with open(run_path) as handle:
        run = pytrec_eval.parse_run(handle)
    measures = {"ndcg_cut.1,5,10", "recall.10,100", "recip_rank", "map"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=threshold).evaluate(run)
    return {m: sum(per_query.get(q, {}).get(m, 0.0) for q in qrels) / len(qrels) for m in MEASURES}


STRATEGIES = [
    ("listwise", {}),
    ("listwise", {"parse": "strict", "passes": 2, "window": 10, "step": 5}),
    ("setwise", {"num_child": 4, "top_k": 5}),
    ("pointwise", {"fusion": "zscore", "fusion_weight": 0.2}),
    ("rubric", {"stages": "12@1,4@2", "depth": 12, "temperature": 0.7}),
    ("groupwise", {"group_size": 10, "repeats": 2, "fusion": "minmax"}),
    ("yesno", {"task_args": {"answer_tokens": ["[1]", "[2]"]}}),  # single tokens of the tiny tokenizer
]


@pytest.mark.parametrize(
    ("task", "settings"), STRATEGIES, ids=[f"{s}-{i}" for i, (s, _) in enumerate(STRATEGIES)]
)
def test_each_task_s_strategy_on_the_tiny_model_writes_a_permutation_per_query(
    bench, model, tmp_path, task, settings
):
    manifest = run_eval(config(bench, tmp_path, model=model, task=task, **settings))
    first_stage = read_run_file(bench.run)
    reranked = read_run_file(tmp_path / "run.trec")
    assert reranked.keys() == first_stage.keys()
    depth = manifest["config"]["depth"]  # the top depth reranked, the first-stage tail below it kept
    assert all(sorted(reranked[q][:depth]) == sorted(first_stage[q][:depth]) for q in first_stage)
    assert all(reranked[q][depth:] == first_stage[q][depth:] for q in first_stage)
    written = pytrec_means(tmp_path / "run.trec", bench.qrels)
    assert manifest["metrics"]["reranked"] == pytest.approx(
        {**manifest["metrics"]["reranked"], **written}, abs=1e-12
    )
    generates = task != "yesno"  # yes/no scores the answer token in one forward pass
    assert manifest["config"]["task"] == task and (manifest["cost"]["generated_tokens"] > 0) == generates
    assert manifest["inputs"]["checksums"]["run"] and manifest["versions"]["transformers"]
    requests = read_rankllm_requests(tmp_path / "results.json")
    assert [[c["doc_id"] for c in r["candidates"]] for r in requests] == [
        reranked[r["query_id"]] for r in requests
    ]


def test_metric_table_equals_pytrec_eval_on_generated_runs(bench, tmp_path):
    qrels = {qid: dict(docs) for qid, docs in _read_qrels(bench.qrels).items()}
    rng = np.random.default_rng(1)
    for trial in range(5):
        run = {
            q: list(rng.permutation(sorted(read_run_file(bench.run)[q]))[: rng.integers(1, 31)])
            for q in qrels
        }
        run.pop(sorted(qrels)[trial])  # a qrels query missing from the run scores 0 (trec_eval -c)
        path = tmp_path / f"run{trial}.trec"
        write_trec_run(path, run, "gen")
        for threshold in (1, 2):
            ours = mean_metrics(per_query_metrics(run, qrels, sorted(MEASURES), threshold), sorted(MEASURES))
            assert ours == pytest.approx(pytrec_means(path, bench.qrels, threshold), abs=1e-12)


def _read_qrels(path):
    with open(path) as handle:
        return pytrec_eval.parse_qrel(handle)


def identity(messages) -> str:
    return ""


@pytest.mark.parametrize(
    ("line", "kind", "message"),
    [
        ("q0 Q0 nowhere 1 9 x", "docs_missing_from_corpus", "document 'nowhere' is not in the corpus"),
        ("q0 Q0 q0-d1 1 high x", "bad_scores", "score 'high' is not a number"),
        ("q0 Q0 q0-d1 1 inf x", "bad_scores", "score 'inf' is not a finite number"),
        ("q0 Q0 q0-d1 1 9 x", "duplicate_lines", "duplicate line for ('q0', 'q0-d1')"),
        ("q0 Q0 q0-d1 9", "malformed_lines", "expected 6 fields"),
        ("zz Q0 q0-d1 1 9 x", "topics_missing_text", "topic 'zz' is not among the topics"),
    ],
)
def test_bad_run_lines_fail_in_one_line_or_are_skipped_and_counted(bench, tmp_path, line, kind, message):
    run = tmp_path / "run.txt"
    run.write_text(bench.run.read_text() + line + "\n")
    lines = len(bench.run.read_text().splitlines()) + 1
    settings = dict(task="listwise", run=str(run))
    with pytest.raises(DataError, match="^" + re.escape(f"{run}:{lines}: {message}")):
        run_eval(config(bench, tmp_path / "strict", **settings), FunctionBackend(identity))
    manifest = run_eval(
        config(bench, tmp_path / "skip", skip_missing=True, **settings), FunctionBackend(identity)
    )
    assert manifest["skipped"] == {kind: 1}


def test_topics_missing_from_qrels_and_empty_runs(bench, tmp_path):
    qrels = tmp_path / "qrels.txt"
    qrels.write_text(
        "".join(line + "\n" for line in bench.qrels.read_text().splitlines() if not line.startswith("q0 "))
    )
    with pytest.raises(DataError, match=r":1: topic 'q0' is not in the qrels$"):
        run_eval(config(bench, tmp_path / "a", qrels=str(qrels)), FunctionBackend(identity))
    manifest = run_eval(
        config(bench, tmp_path / "b", qrels=str(qrels), skip_missing=True), FunctionBackend(identity)
    )
    assert manifest["skipped"] == {"topics_missing_from_qrels": 30} and manifest["inputs"]["queries"] == 5
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"empty\.txt: empty run$"):
        run_eval(config(bench, tmp_path / "c", run=str(empty)), FunctionBackend(identity))


def test_rankllm_requests_round_trip_and_robustness(bench, tmp_path):
    first = run_eval(
        config(bench, tmp_path / "first", robustness=["reversed", "shuffled"]), FunctionBackend(identity)
    )
    assert set(first["robustness"]["runs"]) == {"original", "reversed", "shuffled"}
    assert first["robustness"]["runs"]["original"] == first["metrics"]["first_stage"]["ndcg_cut_10"]
    assert (tmp_path / "first" / "run-reversed.trec").is_file()
    again = EvalConfig(
        output_dir=str(tmp_path / "again"),
        requests=str(tmp_path / "first/results.json"),
        qrels=str(bench.qrels),
    )
    second = run_eval(again, FunctionBackend(identity))
    assert second["metrics"]["reranked"] == first["metrics"]["reranked"]
    assert second["inputs"]["checksums"].keys() == {"requests", "qrels"}


def test_cli_eval_runs_and_reports_bad_settings_in_one_line(bench, model, tmp_path, capsys):
    settings = tmp_path / "eval.yaml"
    settings.write_text(f"model: {model}\nrun: {bench.run}\ntopics: {bench.topics}\ncorpus: {bench.corpus}\n")
    main(
        ["eval", str(settings), f"output_dir={tmp_path / 'out'}", "max_new_tokens=4", f"qrels={bench.qrels}"]
    )
    assert "ndcg_cut_10" in capsys.readouterr().out and (tmp_path / "out/manifest.json").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(settings), "task=pairwise"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.skipif(not (REAL / "trec-dl19").is_dir(), reason="shared/data/real/trec-dl19 is absent")
def test_dl19_bm25_baseline_through_requests_and_run_inputs(tmp_path):
    dl19 = REAL / "trec-dl19"
    requests = json.loads((dl19 / "rankllm.bm25.dl19.top100.candidates.json").read_text())
    corpus = tmp_path / "corpus.jsonl"
    docs = {hit["docid"]: hit["content"] for request in requests for hit in request["hits"]}
    corpus.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in docs.items()))
    common = dict(qrels=str(dl19 / "qrels.dl19-passage.txt"), relevance_threshold=2)
    from_requests = EvalConfig(
        output_dir=str(tmp_path / "a"),
        requests=str(dl19 / "rankllm.bm25.dl19.top100.candidates.json"),
        **common,
    )
    from_run = EvalConfig(
        output_dir=str(tmp_path / "b"), run=str(dl19 / "run.rankllm.bm25.dl19.top100.txt"),
        topics=str(dl19 / "topics.dl19-passage.txt"), corpus=str(corpus), **common,
    )  # fmt: skip
    for settings in (from_requests, from_run):
        manifest = run_eval(settings, FunctionBackend(identity))  # unparseable answers keep the BM25 order
        assert manifest["metrics"]["reranked"]["ndcg_cut_10"] == pytest.approx(0.5058, abs=5e-5)
        assert manifest["metrics"]["reranked"]["recall_100"] == pytest.approx(0.4910, abs=5e-5)
        assert manifest["parse"]["repairs"] == 43 * 9


@pytest.mark.skipif(not (REAL / "beir-scifact").is_dir(), reason="shared/data/real/beir-scifact is absent")
def test_scifact_bm25_baseline_with_pointwise_ties_keeping_first_stage_order(tmp_path):
    scifact = REAL / "beir-scifact"
    settings = EvalConfig(
        output_dir=str(tmp_path), task="pointwise", corpus=str(scifact / "corpus.jsonl.gz"),
        run=str(scifact / "run.anserini-1.7.1.bm25-flat.scifact.top100.txt"),
        topics=str(scifact / "topics.beir-v1.0.0-scifact.test.tsv.gz"),
        qrels=str(scifact / "qrels.beir-v1.0.0-scifact.test.txt"),
    )  # fmt: skip
    manifest = run_eval(settings, FunctionBackend(lambda messages: "<answer>5</answer>"))
    assert manifest["metrics"]["reranked"]["ndcg_cut_10"] == pytest.approx(0.6789, abs=5e-5)
    assert manifest["metrics"]["reranked"]["recall_100"] == pytest.approx(0.9253, abs=5e-5)


def test_in_training_evaluation_runs_the_same_strategy(bench, model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.generation import Sampling
    from tasks.sliding_window import SlidingWindow
    from trainers.evaluate import RankingEvalCallback, evaluate_with_strategy

    rows = read_trec(bench.topics, bench.qrels, bench.run, read_corpus(bench.corpus), depth=12)
    policy, tokenizer = AutoModelForCausalLM.from_pretrained(model), AutoTokenizer.from_pretrained(model)
    one_window = SlidingWindow(window=20, sampling=Sampling(max_new_tokens=8))
    logged = []
    trainer = type("Trainer", (), {"model": policy, "processing_class": tokenizer, "log": logged.append})()
    callback = RankingEvalCallback(trainer, rows, one_window, every=1)
    callback.on_step_end(None, type("State", (), {"global_step": 1})(), None)
    direct = evaluate_with_strategy(policy, tokenizer, rows, one_window)
    assert logged == [{"eval_ndcg@10": direct.ndcg, "eval_repaired": direct.repaired}]


@pytest.fixture
def lora_adapter(model, tmp_path) -> Path:
    """A LoRA adapter folder over the toy model, saved as a training stage saves one (with the tokenizer)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(model)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(model).save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


@pytest.fixture
def vllm_installed(monkeypatch):
    """``find_spec`` reports vLLM installed, as on a GPU machine with ``rankrl[vllm]``."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else find_spec(name, *a)
    )


def test_vllm_engine_on_an_adapter_folder_is_a_one_line_error_and_auto_merges_with_transformers(
    lora_adapter, vllm_installed, caplog
):
    from core.generation import HFBackend
    from evaluation.runner import load_backend

    with pytest.raises(ValueError, match=r"is a LoRA adapter folder .*`rankrl export .* MERGED_DIR`"):
        load_backend(str(lora_adapter), engine="vllm")
    backend = load_backend(str(lora_adapter), engine="auto", dtype="float32")
    assert isinstance(backend, HFBackend) and "adapter folder: evaluating with transformers" in caplog.text
    assert not any("lora" in name for name, _ in backend.model.named_parameters())  # merged onto its base
