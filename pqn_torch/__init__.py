"""pqn-torch: actor-critic PQN in PyTorch on batched MuJoCo Warp environments."""

import os

try:
    import mujoco  # noqa: F401  (first import: with MUJOCO_GL set, MuJoCo loads that OpenGL backend right here)
except Exception as _error:  # the GL loaders fail with assorted error types
    if not os.environ.get("MUJOCO_GL"):
        raise
    raise ImportError(
        f"MuJoCo cannot load the OpenGL backend MUJOCO_GL={os.environ['MUJOCO_GL']} ({type(_error).__name__}: "
        f"{_error}); install it (osmesa: apt-get install libosmesa6, egl: a GPU driver with EGL) or unset MUJOCO_GL "
        "(only video recording renders)"
    ) from None

from pqn_torch.algo import PQN, PQNConfig  # noqa: E402
from pqn_torch.envs import list_tasks, make_env  # noqa: E402

__all__ = ["PQN", "PQNConfig", "list_tasks", "make_env"]
__version__ = "0.1.0"
