"""Shared helpers of the training tests: a tiny, fast run config (plain dict, as hydra would compose it)."""


def tiny_config(
    task: str = "CartpoleBalance",
    num_envs: int = 16,
    episode_length: int = 50,
    eval_envs: int = 4,
    lr: tuple[float, float] = (3e-4, 1e-5),
    actor_hidden_sizes: tuple[int, ...] = (32,),
    **changes,
) -> dict:
    """``num_envs`` x 8 steps per update, 2 epochs x 2 minibatches, 32-unit networks; ``changes`` replace
    top-level keys."""
    alg = dict(
        num_envs=num_envs,
        num_steps=8,
        num_epochs=2,
        num_minibatches=2,
        actor_hidden_sizes=list(actor_hidden_sizes),
        critic_hidden_sizes=[32],
        num_critics=2,
        lr_start=lr[0],
        lr_end=lr[1],
    )
    config = {
        "task": {"name": task, "overrides": {"episode_length": episode_length}},
        "alg": alg,
        "seed": 0,
        "device": "cpu",
        "backend": "mujoco",
        "num_threads": 1,
        "total_timesteps": 512,
        "compile": False,
        "resume": None,
        "eval": {"interval": 0.5, "num_envs": eval_envs},
        "log_interval": 1,
        "checkpoint_interval": 0.5,
        "cpu_presets": {"dm_suite": "cpu"},
    }
    config.update(changes)
    return config


def check_training_smoke_run(task: str, tmp_path) -> None:
    """A few PQN updates on ``task`` with a tiny config run and write a checkpoint and evaluation rows."""
    from pqn_torch.training import run_training

    config = tiny_config(task=task, num_envs=4, episode_length=8, eval_envs=2, total_timesteps=128)
    run_training(config, tmp_path, show_progress=False)
    assert list((tmp_path / "checkpoints").glob("*.pt"))
    assert len((tmp_path / "eval.csv").read_text().strip().splitlines()) >= 3
