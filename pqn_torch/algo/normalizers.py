"""Running statistics that normalize observations and rewards, kept as module buffers.

Being buffers, the statistics travel with ``state_dict`` into checkpoints, so a resumed run and an
evaluation see exactly the normalization the policy was trained with. They are held in float64:
after 10^8 samples a float32 count and mean would have lost the precision the merge needs.

Outliers: the merge has no forgetting, so a single world whose physics blows up (values of 1e9 while
the others sit near 1) would inflate a feature's variance for the rest of the run and flatten that
input for the networks. Before merging, an entry further than ``OUTLIER_SPREADS`` robust standard
deviations of its batch (1.4826 x the median absolute deviation across the batch's rows, at least
``OUTLIER_MIN_SPREAD``) from the batch's median is replaced by that median; median and spread are
estimated from at most ``REFERENCE_ROWS`` evenly spaced rows, so the cost does not grow with the
number of worlds. The test is made against the batch, not the running statistics, so a blow-up spread
over several steps cannot widen its own acceptance band step by step. Ordinary data never comes near
the bound (observations of the DM tasks stay far below 100), so the statistics of a healthy run are
exactly the plain merge's (``docs/algorithm.md#normalizers``; a deviation from purejaxql, which merges
everything). Under ``torchrun`` the filter runs on each rank's own batch before the
ranks' batch moments are merged (:func:`pqn_torch.distributed.merge_moments`).
"""

from __future__ import annotations

import torch
from torch import nn

from pqn_torch.distributed import merge_moments

NORMALIZE_EPS = 1e-8
INITIAL_COUNT = 1e-4
OUTLIER_SPREADS = 100.0
OUTLIER_MIN_SPREAD = 1.0
MAD_TO_STD = 1.4826
REFERENCE_ROWS = 64
"""Median absolute deviation -> standard deviation, for normally distributed data."""


class RunningMeanStd(nn.Module):
    """Per-feature running mean and (population) variance, merged batch by batch.

    Starts at mean 0, variance 1, count 1e-4; ``update`` merges a batch with the parallel-variance
    formula (Chan et al.), as purejaxql's observation and reward normalizers do.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(INITIAL_COUNT, dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Merge ``batch`` [B, *shape] into the statistics (outliers replaced first, see module docstring)."""
        batch = self._without_outliers(batch.to(torch.float64))
        # Under torchrun: the moments of every rank's batch together, so all ranks keep equal statistics.
        batch_count, batch_mean, batch_var = merge_moments(
            batch.shape[0], batch.mean(dim=0), batch.var(dim=0, correction=0)
        )
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean.add_(delta * batch_count / total)
        self.var.copy_(
            (self.var * self.count + batch_var * batch_count + delta.square() * self.count * batch_count / total)
            / total
        )
        self.count.copy_(total)

    @staticmethod
    def _without_outliers(batch: torch.Tensor) -> torch.Tensor:
        """``batch`` with its outlier entries set to their feature's batch median; unchanged (same values) without."""
        reference = batch[:: max(1, batch.shape[0] // REFERENCE_ROWS)][:REFERENCE_ROWS]
        center = reference.median(dim=0).values
        spread = ((reference - center).abs().median(dim=0).values * MAD_TO_STD).clamp_min(OUTLIER_MIN_SPREAD)
        deviation = (batch - center).abs()
        return torch.where(deviation <= spread * OUTLIER_SPREADS, batch, center)  # NaN compares False: replaced too

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / sqrt(var + 1e-8)`` in ``x``'s dtype."""
        return ((x - self.mean) / torch.sqrt(self.var + NORMALIZE_EPS)).to(x.dtype)


class RewardNormalizer(nn.Module):
    """Divides rewards by the running std of each env's discounted return (purejaxql's scheme).

    Per env, ``return = gamma * return * (1 - done) + reward`` (``done`` of the same step, as in
    purejaxql); the std is that of all envs' returns over time.
    """

    discounted_return: torch.Tensor

    def __init__(self, num_envs: int, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma
        self.stats = RunningMeanStd(())
        self.register_buffer("discounted_return", torch.zeros(num_envs, dtype=torch.float64))

    @torch.no_grad()
    def forward(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        """Update with this step's ``reward`` [N] and ``done`` [N]; return the normalized reward."""
        kept = torch.where(done, 0.0, self.gamma * self.discounted_return)
        self.discounted_return.copy_(kept + reward)
        self.stats.update(self.discounted_return)
        return (reward / torch.sqrt(self.stats.var + NORMALIZE_EPS)).to(reward.dtype)
