"""``rankrl tts`` end to end on the tiny model: a reward-model scorer, the sweep and budget forcing write the
table, the PNG, the samples and the manifest; the backend's assistant prefill; CLI errors in one line."""

from __future__ import annotations

import csv
import json

import huggingface_hub
import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from core.generation import encode_prompt
from core.tiny import build_tiny_model
from evaluation.runner import load_backend
from evaluation.tts import prefilled
from evaluation.tts_report import COLUMNS
from rankrl.cli import main
from rewards.progress import thinking_part
from tasks.math import MathTask
from tasks.setwise import R1_SYSTEM_PROMPT
from tests.toy_benchmark import SMALL_MODEL

PROBLEMS = [
    {"problem": "Tom has 3 apples and buys 4 more. How many apples?", "answer": "7", "id": "a"},
    {"problem": "A box holds 6 eggs. How many eggs in 2 boxes?", "answer": "12", "id": "b"},
    {"problem": "Sam had 10 coins and lost 4. How many coins are left?", "answer": "#### 6", "id": "c"},
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny reasoner and a sequence-classification reward model with its (random) head."""
    folder = tmp_path_factory.mktemp("models")
    texts = [row["problem"] for row in PROBLEMS] * 5 + [
        R1_SYSTEM_PROMPT,
        "<think>x</think> <answer>7</answer>",
    ] * 5
    policy = build_tiny_model(folder / "policy", texts, SMALL_MODEL, phrases=[R1_SYSTEM_PROMPT])
    reward = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)
    reward.save_pretrained(folder / "reward")
    AutoTokenizer.from_pretrained(policy).save_pretrained(folder / "reward")
    return policy, folder / "reward"


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PROBLEMS))
    return path


def test_tts_on_the_tiny_model_writes_table_plot_samples_and_manifest(models, dataset, tmp_path, capsys):
    policy, reward = models
    out = tmp_path / "out"
    recipe = tmp_path / "tts.yaml"
    recipe.write_text(
        f"model: {policy}\ndataset: {dataset}\noutput_dir: {out}\nreward_model: {reward}\n"
        "strategies: [majority, weighted, best_of_n, first_finish]\nn_values: [1, 2, 4]\n"
        "max_new_tokens: 12\ntemperature: 1.0\nanswer_tokens: 4\nnum_waits: 1\ndtype: float32\n"
        "regret_cutoffs: [16, 256]\nregret_traces: 2\nregret_samples: 2\nregret_max_new_tokens: 4\n"
    )
    main(["tts", str(recipe), "budgets=[4,8]"])
    printed = capsys.readouterr().out
    assert "| strategy | n | budget |" in printed and "| cutoff | normalized_area |" in printed
    with open(out / "tts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == 6 * 3 + 2  # four rules, pass@n and pass@k at each n, one row per budget
    for name in ("majority", "weighted", "best_of_n", "first_finish", "pass@n", "pass@k"):
        mine = [row for row in rows if row["strategy"] == name]
        tokens = [float(row["tokens_per_problem"]) for row in mine]
        assert [int(row["n"]) for row in mine] == [1, 2, 4] and tokens == sorted(tokens)
        assert all(0 < t <= 12 * int(row["n"]) for t, row in zip(tokens, mine, strict=True))
        assert all(row["problems"] == "3" and 0 <= float(row["accuracy"]) <= 1 for row in mine)
    forced = [row for row in rows if row["strategy"] == "budget_forcing"]
    assert [int(row["budget"]) for row in forced] == [4, 8]
    assert all(0 < float(row["tokens_per_problem"]) <= int(row["budget"]) + 4 for row in forced)
    assert (out / "tts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "tts.md").read_text().count("\n") == len(rows) + 2
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b", "c"]
    assert all(len(r["samples"]) == 4 and all(0 <= s["score"] <= 1 for s in r["samples"]) for r in records)
    for record in records:
        for budget, sample in record["budget_forcing"].items():
            assert "\n</think>\n\nFinal answer:" in sample["text"] and sample["num_tokens"] <= int(budget) + 4
    manifest = json.loads((out / "manifest.json").read_text())
    generated = sum(s["num_tokens"] for r in records for s in r["samples"])
    assert manifest["cost"]["generated_tokens"] == generated and manifest["inputs"]["problems"] == 3
    assert manifest["sampling"]["num_samples"] == 4 and manifest["config"]["budgets"] == [4, 8]
    assert len(manifest["table"]) == len(rows) and "sha256" in manifest["inputs"]
    # MRT's regret: the first 2 samples of each problem, forced to answer after each episode (and at the end).
    regret = json.loads((out / "regret.json").read_text())
    assert [row["cutoff"] for row in regret["rows"]] == [16, 256] and regret["rows"] == manifest["regret"]
    assert [len(traces) for traces in regret["curves"]] == [2, 2, 2]
    # x: the tokens of the prompt and of the reply written so far, plus the forced answers' mean (1 to 4).
    tokenizer = AutoTokenizer.from_pretrained(policy)
    for row, record, traces in zip(PROBLEMS, records, regret["curves"], strict=True):
        prompt = MathTask().prompt(row)
        for sample, curve in zip(record["samples"][:2], traces, strict=True):
            whole = prefilled(prompt, thinking_part(sample["text"]).rstrip("\n"))
            assert len(curve) >= 2 and all(0 <= right <= 1 for _, right in curve)
            assert 1 <= curve[0][0] - len(encode_prompt(tokenizer, prompt)) <= 4
            assert 1 <= curve[-1][0] - len(encode_prompt(tokenizer, whole)) <= 4
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_hf_backend_continues_an_assistant_prefill(models):
    policy, _ = models
    backend = load_backend(str(policy), dtype="float32")
    prompt = MathTask().prompt({"problem": "Tom has 3 apples."})
    prefix = "<think>count 3 and 4"
    tokenizer = backend.tokenizer
    prefilled = encode_prompt(tokenizer, [*prompt, {"role": "assistant", "content": prefix}])
    assert prefilled == encode_prompt(tokenizer, prompt) + tokenizer.encode(prefix, add_special_tokens=False)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["dataset=missing.jsonl"], "missing.jsonl: no such dataset file"),
        (["n_values=[0,4]"], "n_values must be positive integers"),
        (["strategies=[weighted]"], "'weighted' needs a scorer"),
        (["nsamples=4"], "unknown key 'nsamples'"),
    ],
)
def test_cli_errors_are_one_line(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tts", *arguments])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in error and error.count("\n") == 1
