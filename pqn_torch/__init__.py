"""pqn-torch: actor-critic PQN in PyTorch on batched MuJoCo Warp environments."""

from pqn_torch.algo import PQN, PQNConfig
from pqn_torch.envs import list_tasks, make_env

__all__ = ["PQN", "PQNConfig", "list_tasks", "make_env"]
__version__ = "0.1.0"
