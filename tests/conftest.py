"""Fixtures shared by the task tests."""

import warnings

import mujoco
import pytest


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
