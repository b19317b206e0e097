"""The agent's training metrics, each named once: what it measures, what it is averaged over, its tensorboard tag.

Everything that handles metrics by position derives that position from :data:`METRICS`: the slots of
the agent's on-device sums (``PQN.metric_sums``, one float64 entry per summed metric, in this order),
the order in which :meth:`PQN._learn` adds a minibatch step's named values, the averaging in
:meth:`PQN.pop_metrics` and across ranks (the trainer), and the logger's tags. Reordering or adding a
metric here therefore cannot put one metric's value under another's name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One training metric.

    ``over`` says what :meth:`PQN.pop_metrics` divides its sum by: ``"minibatch"`` (gradient steps),
    ``"rollout"`` (rollouts), ``"episode"`` (training episodes finished), ``"count"`` (nothing: a
    plain count); ``"schedule"`` metrics are not summed but read from the schedules when popped.
    """

    name: str
    over: str
    tag: str
    meaning: str


METRICS = (
    Metric(
        "critic_loss",
        "minibatch",
        "loss/critic",
        "sum over the critics of each one's mean Huber loss against the Q(lambda) targets",
    ),
    Metric("actor_loss", "minibatch", "loss/actor", "mean of -Q(s, actor(s)) plus the gated penalty"),
    Metric("q_mean", "minibatch", "q/mean", "mean Q-value of the rollout actions over critics and samples"),
    Metric("critic_grad_norm", "minibatch", "grad_norm/critic", "the critic's gradient norm before clipping"),
    Metric("actor_grad_norm", "minibatch", "grad_norm/actor", "the actor's gradient norm before clipping"),
    Metric(
        "penalty_fraction", "minibatch", "actor/penalty_fraction", "fraction of samples whose actor penalty is active"
    ),
    Metric("reward_mean", "rollout", "rollout/reward_mean", "mean reward of the rollout (normalized if enabled)"),
    Metric("value_mean", "rollout", "rollout/value_mean", "mean ensemble value of the explored actions"),
    Metric("target_mean", "rollout", "rollout/target_mean", "mean Q(lambda) target"),
    Metric("episode_return", "episode", "train/episode_return", "undiscounted raw return of finished episodes"),
    Metric("episode_length", "episode", "train/episode_length", "length in env steps of finished episodes"),
    Metric("episodes", "count", "train/episodes", "training episodes finished"),
    Metric("sigma", "schedule", "schedule/sigma", "exploration std of the next rollout (action half-ranges)"),
    Metric("learning_rate", "schedule", "schedule/lr", "learning rate of the next gradient step"),
)

SUMMED = tuple(metric for metric in METRICS if metric.over != "schedule")
"""The metrics summed on device, in the order of their slots in ``PQN.metric_sums``."""
SLOTS = {metric.name: slot for slot, metric in enumerate(SUMMED)}
"""Metric name -> its slot in ``PQN.metric_sums``."""
TAGS = {metric.name: metric.tag for metric in METRICS}
"""Metric name -> tensorboard tag."""


def names_over(over: str) -> tuple[str, ...]:
    """The names of the metrics averaged over ``over``, in slot order."""
    return tuple(metric.name for metric in METRICS if metric.over == over)


def slots_over(over: str) -> slice:
    """The slots of the summed metrics averaged over ``over``: one contiguous run, as ``METRICS`` lists them."""
    slots = [SLOTS[name] for name in names_over(over)]
    if not slots or slots != list(range(slots[0], slots[-1] + 1)):
        raise ValueError(f"the metrics averaged over {over!r} must be listed together in METRICS, got slots {slots}")
    return slice(slots[0], slots[-1] + 1)
