"""Fixtures shared by the tests, and a guard that keeps torch tensors out of `pytest.approx`."""

import warnings
from collections.abc import Mapping
from typing import Any

import mujoco
import pytest
import torch

_pytest_approx = pytest.approx


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, Mapping):
        return any(_holds_tensor(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(item) for item in value)
    return False


class _FloatsOnlyApprox:
    """`pytest.approx` that refuses torch tensors on either side of the comparison.

    How approx treats a tensor has changed between pytest releases (9.2 iterates over it, which fails for
    a 0-d tensor); comparing Python floats, or tensors with `torch.testing.assert_close`, keeps a new
    pytest release from turning the suite red by itself.
    """

    def __init__(self, expected: Any, *args: Any, **kwargs: Any) -> None:
        if _holds_tensor(expected):
            raise TypeError("pytest.approx got a torch tensor: use .item() or use torch.testing.assert_close")
        self._approx = _pytest_approx(expected, *args, **kwargs)

    def __eq__(self, actual: object) -> bool:
        if _holds_tensor(actual):
            raise TypeError("pytest.approx compared with a torch tensor: use .item() or torch.testing.assert_close")
        return bool(self._approx == actual)

    def __ne__(self, actual: object) -> bool:
        return not self == actual

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._approx)


pytest.approx = _FloatsOnlyApprox  # type: ignore[assignment]


@pytest.fixture(scope="session")
def dm_suite():
    """dm_control's suite (the independent reference for observations and rewards), loadable with MuJoCo 4.

    dm_control 1.0.50's named indexer lists a few flex fields that MuJoCo 4 no longer has; dropping the
    absent ones from its size table is enough for the suite to load (none of the DM domains has flexes).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no display: dm_control warns that GLFW cannot render
        from dm_control import suite
        from dm_control.mujoco import index
    probe_model = mujoco.MjModel.from_xml_string("<mujoco/>")
    for struct_name, struct in (("mjmodel", probe_model), ("mjdata", mujoco.MjData(probe_model))):
        fields = index.sizes.array_sizes[struct_name]
        for field in [f for f in fields if not hasattr(struct, f)]:
            del fields[field]
    return suite


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A short CheetahRun training run (CPU preset, tiny): its run dir, holding checkpoints and eval.csv."""
    from pqn_torch.training import run_training

    from training_testing import tiny_config

    config = tiny_config(
        task="CheetahRun",
        lr=(1e-3, 1e-4),
        actor_hidden_sizes=(32, 32),
        eval={"interval": 0.25, "num_envs": 4},
        log_interval=2,
        cuda_graphs=False,
    )
    run_dir = tmp_path_factory.mktemp("trained_run")
    run_training(config, run_dir, alg_preset="cpu", show_progress=False)
    return run_dir
