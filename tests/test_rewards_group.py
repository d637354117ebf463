"""Group-aware, cross-prompt and progress rewards on hand-computed completions: ERank's r_RR / r_nDCG / r_SE,
the Borda-consensus agreement reward, MRT's episodes and progress bonus (with a scripted sampler), the answer
match, and a fuzz run through all of them."""

from __future__ import annotations

import math

import pytest

from rewards import get_reward
from rewards.consensus import borda_consensus
from rewards.groups import consecutive_group_ids
from rewards.metrics import kendall_tau
from rewards.progress import STOP_TEMPLATE, episode_prefixes, segment_episodes
from tasks.answers import answers_match, final_answer
from tests.test_rewards_more import fuzz_strings


def erank(score) -> str:
    return "<think>relevance analysis</think><answer>" + (f"{score}</answer>" if score is not None else "?")


# q1: positive d1 scored [8, 5], negative d2 scored [6, 2] (t = 3). Ranks: 8 -> 1, 6 -> 2, 5 -> 3, 2 -> 4.
# q2: positive [7, unformatted], negative [7, 0] (t = 4): ranks 7 -> 1, 7 -> 1, 0 -> 3; worst positive 1.
# q3: positive [unformatted], negative [5] (t = 5): no formatted positive, so the negative gets 1 − 0 = 1.
ERANK_SCORES = [8, 5, 6, 2, 7, None, 7, 0, None, 5]
ERANK_COLUMNS = {
    "query_id": ["q1"] * 4 + ["q2"] * 4 + ["q3"] * 2,
    "is_positive": [1, 1, 0, 0, 1, 1, 0, 0, 1, 0],
    "ref_score": [None, None, 3, 3, None, None, 4, 4, None, 5],
}


def test_erank_rr_hand_computed():
    completions = [erank(score) for score in ERANK_SCORES]
    expected = [1.0, 1 / 3, -1.0, 0.99] + [1.0, -1.0, -1.0, 0.84] + [-1.0, 1.0]
    assert get_reward("erank_rr")(completions, **ERANK_COLUMNS) == pytest.approx(expected)
    # The queries are scored independently: shuffling the rows permutes the rewards.
    order = [9, 3, 0, 7, 1, 8, 2, 5, 6, 4]
    shuffled = {key: [values[i] for i in order] for key, values in ERANK_COLUMNS.items()}
    result = get_reward("erank_rr")([completions[i] for i in order], **shuffled)
    assert result == pytest.approx([expected[i] for i in order])


def test_erank_ndcg_variant_and_constants():
    completions = [erank(score) for score in ERANK_SCORES[:4]]
    columns = {key: values[:4] for key, values in ERANK_COLUMNS.items()}
    ideal = 1 + 1 / math.log2(3)  # two positive rollouts
    reward = get_reward("erank_rr", positive_form="ndcg", neg_violation=-0.5, smax=5)
    assert reward(completions, **columns) == pytest.approx([1 / ideal, 0.5 / ideal, -0.5, 1 - 1 / 25])
    with pytest.raises(ValueError, match="unknown positive_form"):
        get_reward("erank_rr", positive_form="dcg")(completions, **columns)


def test_erank_needs_the_reference_score_of_a_negative_below_the_positives():
    completions = [erank(9), erank(1)]
    with pytest.raises(ValueError, match="query 'q': a negative .* needs its 'ref_score'"):
        get_reward("erank_rr")(completions, query_id=["q", "q"], is_positive=[1, 0])


def test_erank_se_hand_computed():
    completions = [erank(7), erank(None), erank(0)]
    reward = get_reward("erank_se")
    assert reward(completions, ref_score=[5, 5, 10]) == pytest.approx([0.96, -1.0, 0.0])


def listwise(order: str) -> str:
    return f"<think>compare the passages</think> <answer>{order}</answer>"


def test_borda_consensus_and_kendall_hand_computed():
    rankings = [["a", "b", "c"], ["b", "a", "c"], ["a", "c", "b"]]
    # Points n − r: a 3+2+3 = 8, b 2+3+1 = 6, c 1+1+2 = 4.
    assert borda_consensus(rankings, ["c", "b", "a"]) == ["a", "b", "c"]
    assert borda_consensus([["a", "b"], ["b", "a"]], ["b", "a"]) == ["b", "a"]  # a tie keeps prompt order
    assert kendall_tau(["b", "a", "c"], ["a", "b", "c"]) == pytest.approx(1 / 3)
    assert kendall_tau(["c", "b", "a"], ["a", "b", "c"]) == pytest.approx(-1.0)


def test_group_consensus_reward_hand_computed():
    candidates = [{"doc_id": d, "text": d} for d in "abc"]
    group = [listwise("[1] > [2] > [3]"), listwise("[2] > [1] > [3]"), listwise("[1] > [3] > [2]"), "garbage"]
    # A second group where everyone agrees on c > b > a.
    other = [listwise("[3] > [2] > [1]")] * 2
    completions = group + other
    columns = {"candidates": [candidates] * 6, "group_ids": [0, 0, 0, 0, 1, 1]}
    assert get_reward("group_consensus")(completions, **columns) == pytest.approx([1, 1 / 3, 1 / 3, -1, 1, 1])
    rbo_reward = get_reward("group_consensus", agreement="rbo", rbo_p=1.0)(completions, **columns)
    # Average overlap with a, b, c: [b, a, c] -> (0 + 1 + 1) / 3; [a, c, b] -> (1 + 1/2 + 1) / 3.
    assert rbo_reward == pytest.approx([1, 2 / 3, 2.5 / 3, -1, 1, 1])


# --- MRT -----------------------------------------------------------------------------------------------

TRACE = "\n\n".join(
    ["Let x = 2", "so 2x = 4", "Wait, check", "4 it is", "But wait, 5?", "Alternatively 6", "Done"]
)


def test_segment_episodes_hand_computed():
    # Boundaries: paragraph 2 ("Wait"), 4 ("But wait"); paragraph 5 is < 2 paragraphs after 4, ignored.
    episodes = segment_episodes(TRACE, group_size=1)
    assert episodes == [
        "Let x = 2\n\nso 2x = 4",
        "Wait, check\n\n4 it is",
        "But wait, 5?\n\nAlternatively 6\n\nDone",
    ]
    assert "\n\n".join(episodes) == TRACE
    assert segment_episodes(TRACE, group_size=2) == ["\n\n".join(episodes[:2]), episodes[2]]
    assert segment_episodes(TRACE, min_gap=1, group_size=1)[-2:] == [
        "But wait, 5?",
        "Alternatively 6\n\nDone",
    ]
    assert segment_episodes("") == [] and episode_prefixes([]) == [""]
    assert episode_prefixes(["A", "B"]) == ["", "A\n\n", "A\n\nB\n\n"]


class ScriptedSampler:
    """A stand-in for the policy: half its answers are 4 once the prefix reaches "4 it is"; records calls."""

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, prompts, prefixes, *, num_samples, temperature, top_p, max_new_tokens):
        self.calls.append((list(prompts), list(prefixes), num_samples, temperature, top_p, max_new_tokens))
        return [
            [r"\boxed{4}" if "4 it is" in prefix and k % 2 == 0 else r"\boxed{7}" for k in range(num_samples)]
            for prefix in prefixes
        ]


def test_mrt_progress_reward_with_a_scripted_sampler():
    sampler = ScriptedSampler()
    completions = [f"<think>{TRACE}</think> The answer is \\boxed{{4}}", "no reasoning \\boxed{3}"]
    reward = get_reward("mrt_progress", num_samples=4, group_size=1, alpha=0.5)
    logged = {}
    values = reward(
        completions, generate=sampler, prompts=["p1", "p2"], answer=["4", "4"], log_metric=logged.__setitem__
    )
    # Row 0: episodes 3, J = [0, 0, 1/2, 1/2] (the 2nd episode ends with "4 it is"): 1 + 0.5 · (1/2 − 0).
    # Row 1: one episode, J = [0, 0]; wrong answer: 0.
    assert values == [1.25, 0.0]
    assert len(sampler.calls) == 1  # one collective sampler call per reward invocation
    prompts, prefixes, num_samples, temperature, top_p, max_tokens = sampler.calls[0]
    assert prompts == ["p1", "p1", "p2", "p2"] and num_samples == 4  # J_0 and J_k of each row only
    assert all(prefix.endswith(STOP_TEMPLATE) for prefix in prefixes)
    assert prefixes[0] == prefixes[2] == STOP_TEMPLATE and prefixes[1].startswith("<think>Let x = 2")
    assert (temperature, top_p, max_tokens) == (0.7, 0.95, 4096)
    assert logged["mrt/bonus"] == pytest.approx(0.25) and logged["mrt/episodes"] == 2.0
    assert logged["mrt/bonus"] == pytest.approx(logged["mrt/J_last"] - logged["mrt/J_first"])


def test_mrt_progress_samples_only_j0_once_per_prompt_and_jk_per_completion():
    # Σ_j (J_j − J_{j−1}) = J_k − J_0, and J_0 (the prompt alone) is shared by the G completions of a prompt.
    calls = []

    def generate(prompts, prefixes, *, num_samples, **settings):
        """Deterministic: the first (number of 4s in prompt + prefix) of the K samples answer 4."""
        calls.append((list(prompts), list(prefixes), num_samples))
        return [
            [r"\boxed{4}" if k < (prompt + prefix).count("4") else r"\boxed{7}" for k in range(num_samples)]
            for prompt, prefix in zip(prompts, prefixes, strict=True)
        ]

    traces = [TRACE, TRACE.replace("4 it is", "5 it is"), TRACE.replace("2x = 4", "2x = 44")]
    completions = [
        f"<think>{trace}</think> \\boxed{{{final}}}" for trace, final in zip(traces, "454", strict=True)
    ]
    assert all(len(segment_episodes(trace, group_size=1)) == 3 for trace in traces)  # k = 3 episodes each
    logged = {}
    reward = get_reward("mrt_progress", num_samples=4, group_size=1, alpha=0.5)
    values = reward(
        completions,
        generate=generate,
        prompts=["x + x = 4?"] * 3,
        answer=["4"] * 3,
        log_metric=logged.__setitem__,
    )
    # J_0 = 1/4 (the prompt's one 4). J_3 = (1 + 2)/4, (1 + 1)/4, (1 + 3)/4. Outcomes 1, 0, 1.
    # The previous implementation sampled every J_j; its Σ_j r_j telescopes to the same J_3 − J_0.
    assert values == [1 + 0.5 * (0.75 - 0.25), 0 + 0.5 * (0.5 - 0.25), 1 + 0.5 * (1.0 - 0.25)]
    assert logged["mrt/J_first"] == 0.25 and logged["mrt/J_last"] == pytest.approx(0.75)
    [(prompts, prefixes, num_samples)] = calls
    full = [f"<think>{trace}\n\n{STOP_TEMPLATE}" for trace in traces]
    assert prompts == ["x + x = 4?"] * 4 and prefixes == [STOP_TEMPLATE, *full] and num_samples == 4
    # (G + 1)·K = 16 samples: K per completion for J_k and K for the shared J_0, not G·(k + 1)·K = 48.
    assert len(prefixes) * num_samples == (3 + 1) * 4


def test_mrt_termination_variant_uses_one_prefix_per_completion():
    sampler = ScriptedSampler()
    reward = get_reward("mrt_progress", variant="termination", num_samples=2, group_size=1, seed=3)
    completion = f"<think>{TRACE}</think> \\boxed{{4}}"
    values = reward([completion] * 6, generate=sampler, prompts=["p"] * 6, answer=["4"] * 6)
    prefixes = sampler.calls[0][1]  # one drawn boundary per completion; identical completions share it
    assert len(prefixes) == len(set(prefixes)) <= 3
    # J at a drawn boundary is 0 before "4 it is" and 1/2 after it: outcome 1 minus that.
    assert set(values) <= {1.0, 0.5} and len(set(values)) == 2
    with pytest.raises(ValueError, match="unknown variant"):
        get_reward("mrt_progress", variant="offline")(["x"], generate=sampler, answer=["1"])


def test_final_answer_extraction():
    assert final_answer("so \\boxed{\\frac{1}{2}} done") == "\\frac{1}{2}"
    assert final_answer("x #### 1,234") == "1,234" and final_answer("<answer> 7 </answer>") == "7"
    assert answers_match("\\boxed{18.00}", "#### 18") and not answers_match("", "")
    assert get_reward("answer_match")(["<think>t</think> \\boxed{5}", "5 </think> 6"], answer=["5", 5]) == [
        1,
        0,
    ]


def test_fuzz_group_rewards_stay_in_range():
    texts = fuzz_strings(4_000, seed=1)
    n = len(texts)
    columns = {
        "query_id": [i // 8 for i in range(n)],
        "is_positive": [i % 8 < 4 for i in range(n)],
        "ref_score": [5] * n,
        "group_ids": consecutive_group_ids(n, 4),
        "candidates": [[{"doc_id": d} for d in "abc"]] * n,
    }
    assert all(-1.0 <= v <= 1.0 for v in get_reward("erank_rr")(texts, **columns))
    assert all(-1.0 <= v <= 1.0 for v in get_reward("erank_rr", positive_form="ndcg")(texts, **columns))
    assert all(-1.0 <= v <= 1.0 for v in get_reward("group_consensus")(texts, **columns))
    sampler = ScriptedSampler()
    mrt = get_reward("mrt_progress", num_samples=1)(texts[:500], generate=sampler, answer=["4"] * 500)
    assert all(-1.0 <= v <= 2.0 and math.isfinite(v) for v in mrt)
