"""Dense candidate mining (:mod:`data_synth.dense`) with a tiny sentence-transformers model built offline.

The model is a randomly initialised one-layer BERT with mean pooling and a WordPiece tokenizer trained on the
test corpus, saved with ``SentenceTransformer.save`` and loaded back by path, as a user's model would be.
Its rankings are meaningless; what is checked is that the index returns exactly the brute-force cosine
top-k (prompts included), that mining and ``rankrl synth`` use it, and the one-line errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import data_synth.dense
from core.sources import doc_text
from data_synth.config import load_config
from data_synth.dense import INSTALL_HINT, NOT_FOUND, DenseConfig, DenseIndex, top_k
from data_synth.inputs import load_rows
from data_synth.mining import mine_candidates
from rankrl.cli import main

WORDS = ["flea", "cat", "dog", "purr", "bark", "year", "night", "milk", "fish", "bird", "sing", "rain"]
CORPUS = {
    f"d{i:02d}": {"title": WORDS[i % 7], "text": " ".join(WORDS[(i * j + i) % len(WORDS)] for j in range(5))}
    for i in range(30)
}
QUERIES = {"q1": "how long do fleas live", "q2": "cats purr at night", "q3": "birds sing in the rain"}
QRELS = {"q1": {"d07": 1}, "q2": {"d11": 1, "d12": 0}, "q3": {"d29": 2}}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A tiny BERT + mean pooling sentence-transformers folder; no download."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("dense")
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer()
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    texts = [doc_text(d) for d in CORPUS.values()] + list(QUERIES.values())
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    torch.manual_seed(0)
    shape = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=64, **shape)).save_pretrained(
        root / "bert"
    )
    tokenizer.save_pretrained(root / "bert")
    transformer = Transformer(str(root / "bert"))
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(root / "st"))
    return str(root / "st")


def brute_force(model_dir: str, k: int, query_prompt: str = "", passage_prompt: str = "") -> dict:
    """Cosine top-k computed here: one text at a time, prompts prepended by hand, sorted by (-score, id)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")

    def unit(text: str) -> np.ndarray:
        vector = model.encode([text], convert_to_numpy=True)[0].astype(np.float64)
        return vector / np.linalg.norm(vector)

    docs = {d: unit(passage_prompt + doc_text(CORPUS[d])) for d in CORPUS}
    hits = {}
    for qid, query in QUERIES.items():
        vector = unit(query_prompt + query)
        scored = sorted((-float(docs[d] @ vector), d) for d in docs)[:k]
        hits[qid] = [(d, -score) for score, d in scored]
    return hits


def assert_same_hits(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for qid, hits in expected.items():
        assert [d for d, _ in got[qid]] == [d for d, _ in hits], qid
        np.testing.assert_allclose([s for _, s in got[qid]], [s for _, s in hits], atol=1e-5)


def test_search_is_the_brute_force_cosine_top_k_with_prompts(model_dir):
    config = DenseConfig(model_dir, batch_size=4, query_prompt="query: ", passage_prompt="passage: ")
    hits = DenseIndex(CORPUS, config).search(QUERIES, k=5)
    assert_same_hits(hits, brute_force(model_dir, 5, "query: ", "passage: "))
    plain = DenseIndex(CORPUS, DenseConfig(model_dir)).search(QUERIES, k=5)
    assert [s for _, s in plain["q1"]] != pytest.approx([s for _, s in hits["q1"]], abs=1e-5)
    assert len(DenseIndex(CORPUS, DenseConfig(model_dir)).search(QUERIES, k=100)["q2"]) == len(CORPUS)


def test_search_ignores_corpus_order_and_chunking(model_dir, monkeypatch):
    expected = DenseIndex(CORPUS, DenseConfig(model_dir)).search(QUERIES, k=7)
    reversed_corpus = dict(reversed(CORPUS.items()))
    monkeypatch.setattr(data_synth.dense, "SCORE_CHUNK", 1)  # one query per matmul
    assert_same_hits(DenseIndex(reversed_corpus, DenseConfig(model_dir)).search(QUERIES, k=7), expected)


def test_top_k_breaks_ties_by_index():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5], dtype=np.float32)
    assert top_k(scores, 3).tolist() == [1, 3, 0]
    assert top_k(scores, 4).tolist() == [1, 3, 0, 2]
    assert top_k(scores, 10).tolist() == [1, 3, 0, 2, 5, 4]


def test_mine_candidates_with_a_dense_index(model_dir):
    index = DenseIndex(CORPUS, DenseConfig(model_dir))
    plain = mine_candidates(CORPUS, QUERIES, k=4, qrels=QRELS, index=index)
    assert [[c["doc_id"] for c in r["candidates"]] for r in plain] == [
        [d for d, _ in hits] for hits in index.search(QUERIES, k=4).values()
    ]
    assert not any(r["labels"] for r in plain)  # the random model misses every positive
    mixed = mine_candidates(CORPUS, QUERIES, k=4, qrels=QRELS, positives=1, seed=3, index=index)
    assert all(len(r["candidates"]) == 4 for r in mixed)
    assert all(any(label["relevance"] > 0 for label in r["labels"]) for r in mixed)
    assert mixed == mine_candidates(CORPUS, QUERIES, k=4, qrels=QRELS, positives=1, seed=3, index=index)


def write_recipe(root: Path, **fields) -> Path:
    """A BEIR folder of CORPUS / QUERIES / QRELS and a dry-run-able recipe mining it."""
    beir = root / "beir"
    (beir / "qrels").mkdir(parents=True)
    rows = [{"_id": d, **doc} for d, doc in CORPUS.items()]
    (beir / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (beir / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    )
    qrels = [f"{q}\t{d}\t{grade}\n" for q, judged in QRELS.items() for d, grade in judged.items()]
    (beir / "qrels/train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels))
    recipe = {
        "beir": str(beir),
        "model": "toy",
        "output_dir": str(root / "out"),
        "retriever": "dense",
        **fields,
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return root / "recipe.yaml"


def test_recipe_mines_with_the_dense_retriever(model_dir, tmp_path, capsys):
    recipe = write_recipe(
        tmp_path, dense_model=model_dir, query_prompt="query: ", mine_k=4, task_args={"list_size": 4}
    )
    config = load_config(recipe)
    inputs = load_rows(config, config.task_object())
    index = DenseIndex(CORPUS, DenseConfig(model_dir, query_prompt="query: "))
    assert inputs.rows == mine_candidates(CORPUS, QUERIES, k=4, qrels=QRELS, positives=1, index=index)
    assert inputs.sources[1] == (
        f"dense (sentence-transformers `{model_dir}`, cosine, query prompt 'query: ', passage prompt '') "
        "top-4, 1 positive(s) mixed in"
    )
    with pytest.raises(SystemExit) as status:
        main(["synth", str(recipe), "--dry-run", "show_prompts=0"])
    assert status.value.code == 0 and "3 input rows" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"dense_model": "/no/such/e5"}, f"dense_model '/no/such/e5': {NOT_FOUND}"),
        ({"dense_model": "nobody/no-such-model"}, f"dense_model 'nobody/no-such-model': {NOT_FOUND}"),
        (
            {"dense_model": "m", "retriever": "splade"},
            "key 'retriever' is 'splade'; expected one of bm25, dense",
        ),
        ({}, "key 'retriever: dense' needs 'dense_model'"),
        ({"dense_model": "m", "dense_batch_size": 0}, "key 'dense_batch_size' must be >= 1, got 0"),
    ],
)
def test_bad_dense_settings_are_one_line(tmp_path, capsys, fields, expected):
    with pytest.raises(SystemExit) as status:
        main(["synth", str(write_recipe(tmp_path, **fields)), "--dry-run"])
    message = capsys.readouterr().err.strip()
    assert status.value.code == 2 and "\n" not in message and expected in message, message


def test_dense_needs_a_beir_folder_and_the_package(tmp_path, capsys, monkeypatch, model_dir):
    recipe = write_recipe(tmp_path, dense_model=model_dir)
    with pytest.raises(ValueError, match="key 'retriever: dense' mines a BEIR folder"):
        load_config(recipe, ["beir=null", "toy_queries=2"])
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails as if not installed
    with pytest.raises(SystemExit):
        main(["synth", str(recipe), "--dry-run"])
    assert capsys.readouterr().err.strip() == f"rankrl: error: {INSTALL_HINT}"
