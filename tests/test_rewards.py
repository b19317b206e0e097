"""The torch ``tolerance`` against dm_control's own numpy implementation on many random inputs."""

import numpy as np
import pytest
import torch
from dm_control.utils import rewards as dm_rewards

from pqn_torch.envs.tasks.rewards import SIGMOIDS, tolerance

RNG = np.random.default_rng(0)


def _random_cases(count: int):
    for _ in range(count):
        lower = RNG.uniform(-3, 3)
        upper = lower + RNG.choice([0.0, RNG.uniform(0, 2), np.inf])
        if RNG.random() < 0.2:
            lower = -np.inf
        margin = RNG.choice([0.0, RNG.uniform(0.05, 4)])
        yield (lower, upper), margin


@pytest.mark.parametrize("sigmoid", SIGMOIDS)
def test_tolerance_matches_dm_control(sigmoid):
    x = np.concatenate([RNG.normal(0, 4, 500), [0.0, 1.0, -1.0, 1e6, -1e6]])
    for bounds, margin in _random_cases(40):
        value_at_margin = RNG.uniform(0.01, 0.99)
        if sigmoid in ("linear", "quadratic", "cosine") and RNG.random() < 0.3:
            value_at_margin = 0.0
        expected = dm_rewards.tolerance(
            x, bounds=bounds, margin=margin, sigmoid=sigmoid, value_at_margin=value_at_margin
        )
        got = tolerance(
            torch.as_tensor(x), bounds=bounds, margin=margin, sigmoid=sigmoid, value_at_margin=value_at_margin
        )
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_tolerance_float32_close_to_dm_control():
    x = RNG.normal(0, 3, 1000)
    expected = dm_rewards.tolerance(x, bounds=(-0.5, 1.0), margin=2.0, sigmoid="gaussian")
    got = tolerance(torch.as_tensor(x, dtype=torch.float32), bounds=(-0.5, 1.0), margin=2.0)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_tolerance_hand_values():
    x = torch.tensor([10.0, 15.0, 5.0, 0.0, -3.0])
    # CheetahRun's reward: 1 at or above 10 m/s, linear down to 0 at 0 m/s.
    got = tolerance(x, bounds=(10.0, float("inf")), margin=10.0, value_at_margin=0.0, sigmoid="linear")
    torch.testing.assert_close(got, torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bounds": (1.0, 0.0)}, "lower bound"),
        ({"margin": -1.0}, "margin"),
        ({"margin": 1.0, "sigmoid": "bogus"}, "unknown sigmoid"),
        ({"margin": 1.0, "sigmoid": "gaussian", "value_at_margin": 0.0}, "value_at_1"),
        ({"margin": 1.0, "sigmoid": "linear", "value_at_margin": 1.0}, "value_at_1"),
    ],
)
def test_tolerance_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tolerance(torch.zeros(3), **kwargs)
