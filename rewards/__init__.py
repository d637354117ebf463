"""Reward functions for training LLM rerankers with TRL, plus the metrics and parsers they are built on.

Importing this package registers the built-in rewards (``reasonrank``, ``ranking_metric``,
``listwise_format``, ``listwise_monitor``, ``rank_r1_setwise``, ``grouprank``, ``group_consensus``,
``retro_intra``, ``retro_inter``, ``retro_composite``, ``erank_rr``, ``erank_se``, ``mrt_progress``,
``answer_match``, ``yesno_match``);
recipes refer to them by name through :func:`get_reward` / :func:`resolve_rewards`.

- :mod:`rewards.metrics`: trec_eval-exact nDCG@k, Recall@k, P@k, MRR, MAP from rankings and qrels dicts,
  and RBO / average overlap; :mod:`rewards.metrics_array`: the same on (queries x candidates) grade arrays.
- The parsers of model output (never raising) belong to the tasks (:mod:`tasks`), the run readers to
  :mod:`core.sources` and :mod:`core.trec`.
- :mod:`rewards.registry`: name -> reward function, with factory arguments; :mod:`rewards.groups`: the
  group-aware protocol (scopes, ``group_ids``, the injected policy sampler).
- :mod:`rewards.listwise`: ReasonRank-style listwise rewards.
- :mod:`rewards.monitors`: weight-0 monitors (invalid-output reasons, identity rate, order correlation).
- :mod:`rewards.setwise`: Rank-R1's exact-match setwise reward.
- :mod:`rewards.groupwise`: GroupRank's reward and the score-distribution / score-ranking helpers.
- :mod:`rewards.rubric`: Retro*'s intra-, inter-document and composite rewards.
- :mod:`rewards.erank`: ERank's cross-prompt r_RR / r_nDCG and pointwise r_SE rewards.
- :mod:`rewards.consensus`: agreement with the group's Borda consensus ranking.
- :mod:`rewards.answers`, :mod:`rewards.progress`: final-answer equivalence and MRT's progress bonus.
- :mod:`rewards.yesno`: the yes/no judgement's exact-match reward.
"""

from rewards.answers import answer_match_reward
from rewards.consensus import group_consensus_reward
from rewards.erank import erank_rr_reward, erank_se_reward
from rewards.groupwise import grouprank_reward
from rewards.listwise import listwise_format_reward, ranking_metric_reward, reasonrank_reward
from rewards.monitors import listwise_monitor
from rewards.progress import mrt_progress_reward
from rewards.registry import RewardError, available_rewards, get_reward, register_reward, resolve_rewards
from rewards.rubric import retro_composite_reward, retro_inter_reward, retro_intra_reward
from rewards.setwise import rank_r1_setwise_reward
from rewards.yesno import yesno_match_reward

__all__ = [
    "RewardError",
    "answer_match_reward",
    "available_rewards",
    "erank_rr_reward",
    "erank_se_reward",
    "group_consensus_reward",
    "mrt_progress_reward",
    "get_reward",
    "grouprank_reward",
    "listwise_format_reward",
    "listwise_monitor",
    "rank_r1_setwise_reward",
    "ranking_metric_reward",
    "reasonrank_reward",
    "register_reward",
    "resolve_rewards",
    "retro_composite_reward",
    "retro_inter_reward",
    "retro_intra_reward",
    "yesno_match_reward",
]
