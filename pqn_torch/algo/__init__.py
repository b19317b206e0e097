"""Actor-critic PQN in PyTorch: the agent, its networks, Q(lambda) targets, losses and normalizers."""

from pqn_torch.algo.losses import actor_loss, critic_loss, huber
from pqn_torch.algo.networks import Actor, CriticEnsemble
from pqn_torch.algo.normalizers import RewardNormalizer, RunningMeanStd
from pqn_torch.algo.pqn import PQN, PQNConfig
from pqn_torch.algo.qlambda import q_lambda_targets
from pqn_torch.algo.schedules import LinearSchedule

__all__ = [
    "PQN",
    "Actor",
    "CriticEnsemble",
    "LinearSchedule",
    "PQNConfig",
    "RewardNormalizer",
    "RunningMeanStd",
    "actor_loss",
    "critic_loss",
    "huber",
    "q_lambda_targets",
]
