"""Reward functions for training LLM rerankers with TRL, plus the metrics and parsers they are built on.

Importing this package registers the built-in rewards (``reasonrank``, ``ndcg``, ``listwise_format``);
recipes refer to them by name through :func:`get_reward` / :func:`resolve_rewards`.

- :mod:`rewards.metrics`: trec_eval-exact nDCG@k and Recall@k, and RBO / average overlap.
- :mod:`rewards.trec_io`: TREC qrels and run readers.
- :mod:`rewards.parsers`: never-raising parsers of model output.
- :mod:`rewards.registry`: name -> reward function, with factory arguments.
- :mod:`rewards.listwise`: ReasonRank-style listwise rewards.
"""

from rewards.listwise import listwise_format_reward, ndcg_reward, reasonrank_reward
from rewards.registry import available_rewards, get_reward, register_reward, resolve_rewards

__all__ = [
    "available_rewards",
    "get_reward",
    "listwise_format_reward",
    "ndcg_reward",
    "reasonrank_reward",
    "register_reward",
    "resolve_rewards",
]
