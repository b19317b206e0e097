"""Hydra composition of every task and alg yaml, the presets against the reference table, bad values, CPU twins."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pqn_torch.algo import PQNConfig
from pqn_torch.envs.tasks import get_task_class
from pqn_torch.training import ConfigError, settings_from_config
from pqn_torch.training.presets import PresetChoice, choose_preset
from pqn_torch.training.schema import AlgPreset, RunConfig, explain
from pqn_torch.training.settings import interval_updates

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
TASKS = sorted(p.stem for p in (CONFIG_DIR / "task").glob("*.yaml"))
PRESETS = sorted(p.stem for p in (CONFIG_DIR / "alg").glob("*.yaml"))

# purejaxql's per-domain yaml for pqn_mujoco_playground.py (its config/alg/), keys lower-cased.
REFERENCE = {
    "dm_suite": dict(
        total_timesteps=5e7,
        num_envs=1024,
        num_steps=32,
        num_epochs=4,
        num_minibatches=32,
        actor_hidden_sizes=[512, 256, 128],
        critic_hidden_sizes=[1024, 512, 256],
        num_critics=2,
        normalize_obs=True,
        normalize_reward=False,
        anneal_lr=True,
        lr_start=1e-4,
        lr_end=5e-7,
        gamma=0.995,
        q_lambda=0.70,
        noise_start=1.0,
        noise_finish=0.15,
        noise_decay=1.0,
        penalty_threshold=0.15,
        penalty_coeff=10.0,
        max_grad_norm=1.0,
    ),
    "locomotion": dict(
        total_timesteps=1e8,
        num_envs=4096,
        num_steps=32,
        num_epochs=4,
        num_minibatches=32,
        actor_hidden_sizes=[256, 128],
        critic_hidden_sizes=[1024, 1024],
        num_critics=1,
        normalize_obs=True,
        normalize_reward=True,
        anneal_lr=True,
        lr_start=5e-4,
        lr_end=5e-6,
        gamma=0.95,
        q_lambda=0.99,
        noise_start=1.0,
        noise_finish=0.2,
        noise_decay=0.9,
        penalty_threshold=0.15,
        penalty_coeff=50.0,
        max_grad_norm=1.0,
    ),
    "manipulation": dict(
        total_timesteps=2e9,
        num_envs=4096,
        num_steps=128,
        num_epochs=4,
        num_minibatches=128,
        actor_hidden_sizes=[256, 128],
        critic_hidden_sizes=[1024, 1024],
        num_critics=1,
        normalize_obs=True,
        normalize_reward=True,
        anneal_lr=False,
        lr_start=5e-4,
        gamma=0.97,
        q_lambda=0.99,
        noise_start=1.0,
        noise_finish=0.6,
        noise_decay=1.0,
        penalty_threshold=0.1,
        penalty_coeff=50.0,
        max_grad_norm=1.0,
    ),
}


@pytest.fixture(scope="module", autouse=True)
def hydra_configs():
    with initialize_config_dir(version_base=None, config_dir=str(CONFIG_DIR)):
        yield


def composed(overrides: list[str]) -> dict:
    return OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)


def test_defaults_are_cheetah_run_with_the_dm_suite_preset():
    config = composed([])
    settings = settings_from_config(config)
    assert settings.task == "CheetahRun" and settings.total_timesteps == 50_000_000
    assert settings.alg.num_envs == 1024 and settings.alg.bootstrap_truncation is True
    assert settings.device == "auto" and settings.backend == "auto" and settings.compile == "auto"
    assert settings.cuda_graphs == "auto" and settings.split_update == "auto" and settings.torch_threads == 1


@pytest.mark.parametrize("task", TASKS)
def test_every_task_yaml_composes_into_valid_settings(task):
    settings = settings_from_config(composed([f"task={task}"]))
    assert settings.task == task
    get_task_class(task)(**settings.task_overrides)  # a registered task that accepts the yaml's overrides


@pytest.mark.parametrize("preset", PRESETS)
def test_every_alg_preset_composes_and_beats_the_task_default(preset):
    config = composed(["task=CartpoleBalance", f"alg={preset}"])  # the task yaml's default is dm_suite
    assert config["alg"] == OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "alg" / f"{preset}.yaml"))
    settings_from_config(config)


@pytest.mark.parametrize("preset", sorted(REFERENCE))
def test_presets_match_the_reference_table(preset):
    alg = composed([f"alg={preset}"])["alg"]
    for key, value in REFERENCE[preset].items():
        assert alg[key] == pytest.approx(value), key


@pytest.mark.parametrize("task", ["PandaPickCube", "PandaPickCubeOrientation"])
@pytest.mark.parametrize("preset", ["manipulation", "manipulation_cpu"])
def test_panda_pick_tasks_keep_purejaxqls_discounting_on_either_preset(task, preset):
    """purejaxql runs PandaPickCube(+Orientation) with gamma 0.95 and lambda 0.5, not the preset's 0.97 / 0.99."""
    settings = settings_from_config(composed([f"task={task}", f"alg={preset}"]))
    assert (settings.alg.gamma, settings.alg.q_lambda) == (0.95, 0.5)
    assert settings.alg.num_envs == (4096 if preset == "manipulation" else 128)


@pytest.mark.parametrize(
    "task", ["ApolloJoystickFlatTerrain", "BarkourJoystick", "Op3Joystick", "T1JoystickRoughTerrain"]
)
@pytest.mark.parametrize("preset", ["locomotion", "locomotion_cpu", "locomotion_humanoid_cpu"])
def test_locomotion_tasks_keep_purejaxqls_gamma_on_every_preset(task, preset):
    """purejaxql trains these four with gamma 0.97 instead of the locomotion preset's 0.95."""
    settings = settings_from_config(composed([f"task={task}", f"alg={preset}"]))
    assert (settings.alg.gamma, settings.alg.q_lambda) == (0.97, 0.99)


def test_dm_suite_preset_is_the_pqn_config_defaults():
    """PQNConfig's defaults (the library's) and the dm_suite yaml (the CLI's) are the same reference preset."""
    alg = composed(["alg=dm_suite"])["alg"]
    assert alg.pop("total_timesteps") == AlgPreset.total_timesteps == 5e7
    assert PQNConfig(**alg) == PQNConfig()


@pytest.mark.parametrize(
    "override, message",
    [
        ("alg.num_env=3", "unknown alg option(s) ['num_env']; valid: ['num_envs', 'num_steps', "),
        ("eval.intervall=0.5", "unknown eval option(s) ['intervall']; valid: ['interval', 'num_envs']"),
        ("alg.num_envs=many", "alg.num_envs must be an integer, got 'many'"),
        ("alg.actor_hidden_sizes=[64,x]", "alg.actor_hidden_sizes must be a list of integers, got 'x'"),
        ("log_interval=often", "log_interval must be a positive integer, got 'often'"),
        ("task=Nope", "In 'config': Could not find 'task/Nope'; valid: AcrobotSwingup, AcrobotSwingupSparse, "),
    ],
)
def test_schema_refuses_bad_overrides_at_composition_in_one_line(override, message):
    """Hydra composes over the typed schema: unknown keys and wrong types never reach a run."""
    with pytest.raises(Exception) as raised:
        compose(config_name="config", overrides=[override])
    line = explain(raised.value, RunConfig)
    assert line.startswith(message) and "\n" not in line


def test_command_line_overrides_reach_the_settings():
    settings = settings_from_config(
        composed(["task=CheetahRun", "alg=cpu", "alg.num_envs=32", "total_timesteps=2e6", "seed=3", "compile=false"])
    )
    assert settings.alg.num_envs == 32 and settings.total_timesteps == 2_000_000
    assert settings.seed == 3 and settings.compile is False


@pytest.mark.parametrize(
    "override, message",
    [
        ("total_timesteps=-5", "total_timesteps must be a positive integer, got -5"),
        ("compile=maybe", "compile must be true, false or auto, got 'maybe'"),
        ("cuda_graphs=1", "cuda_graphs must be true, false or auto, got 1"),
        ("split_update=2", "split_update must be true, false or auto, got 2"),
        ("eval.interval=0", "eval.interval must be a fraction of training"),
        ("seed=-1", "seed must be an integer >= 0"),
        ("alg.num_envs=0", "alg.num_envs must be a positive integer, got 0"),
        ("+alg.gama=0.9", r"unknown alg option\(s\) \['gama'\]"),
        ("alg.lr_start=inf", r"alg.lr_start must be a finite number >= 0, got inf"),
        ("alg.max_grad_norm=nan", r"alg.max_grad_norm must be a finite number > 0, got nan"),
        ("alg.noise_start=inf", r"alg.noise_start must be a finite number >= 0, got inf"),
        (
            "+task.overrides.episode_length=abc",
            r"task.overrides \(CheetahRun\): episode_length must be a positive integer "
            r"\(control steps\), got 'abc'",
        ),
        ("+task.overrides.episode_length=-5", r"episode_length must be a positive integer \(control steps\), got -5"),
        (
            "+task.overrides.sim_dt=0",
            r"task.overrides \(CheetahRun\): sim_dt must be a positive number of seconds, got 0",
        ),
        (
            "total_timesteps=1000",
            r"total_timesteps \(1,000\) must be at least one update, alg.num_envs \* alg.num_steps = "
            r"32,768",
        ),
        (
            "checkpoint_interval=0.0001",
            r"checkpoint_interval=0.0001 is less than one update of this run \(1525 updates\); "
            r"use 0 \(final checkpoint only\) or a fraction >= 0.000656",
        ),
        (
            "eval.interval=0.0001",
            r"eval.interval=0.0001 is less than one update of this run \(1525 updates\); use a fraction >= 0.000656",
        ),
        ("resume=123", "resume must be a run directory or checkpoint path, got 123"),
    ],
)
def test_invalid_values_fail_with_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as raised:
        settings_from_config(composed([override]), explicit=[override.partition("=")[0]])
    assert "\n" not in str(raised.value)


def test_default_intervals_shorter_than_one_update_become_one_update_with_a_note():
    """The issue's command (4 updates of 64 x 16 steps): the defaults, 0.1 of training, become 1/4."""
    settings = settings_from_config(composed(["task=CartpoleBalance", "alg=cpu", "total_timesteps=4096"]))
    assert settings.checkpoint_interval == 0.25 and settings.eval_interval == 0.25
    assert settings.notes == (
        "checkpoint_interval: the default 0.1 of training is less than one update of this run (4 updates); "
        "using one update",
        "eval.interval: the default 0.1 of training is less than one update of this run (4 updates); using one update",
    )
    long_run = settings_from_config(composed(["task=CartpoleBalance", "alg=cpu", "total_timesteps=20480"]))
    assert (long_run.checkpoint_interval, long_run.eval_interval, long_run.notes) == (0.1, 0.1, ())


@pytest.mark.parametrize("num_updates", [3, 7, 49, 98, 1525])
def test_one_update_as_a_fraction_is_one_update_despite_rounding(num_updates):
    """``49 * (1 / 49)`` is 0.999... in floats: a plain int() would make it 0 updates (never)."""
    assert interval_updates(1 / num_updates, num_updates) == 1
    assert interval_updates(0.5, num_updates) == num_updates // 2
    assert interval_updates(0.0, num_updates) == 0


# ----------------------------------------------------------------------------- the CPU-sized default
def task_preset(task: str) -> str:
    return compose(config_name="config", overrides=[f"task={task}"], return_hydra_config=True).hydra.runtime.choices.alg


@pytest.mark.parametrize("task", TASKS)
def test_every_task_runs_a_cpu_sized_preset_on_a_cpu(task):
    """Each task's preset has a CPU-sized twin in cpu_presets: a new task family needs one entry there."""
    config = composed([f"task={task}"])
    choice = choose_preset({**config, "device": "cpu"}, task_preset(task), alg_on_command_line=False)
    assert choice.preset in PRESETS, choice.message
    cpu = settings_from_config(composed([f"task={task}", f"alg={choice.preset}"]))
    gpu = settings_from_config(config)
    assert cpu.alg.num_envs <= 256 and cpu.total_timesteps < gpu.total_timesteps  # sized for a laptop
    assert "GPU-sized" in choice.message and f"alg={choice.preset}" in choice.message


BIPEDS = [task for task in TASKS if task.startswith(("T1", "G1", "H1", "Berkeley", "Apollo", "Op3"))]
QUADRUPEDS = [task for task in TASKS if task.startswith(("Go1", "Spot", "Barkour"))]


@pytest.mark.parametrize("task", BIPEDS + QUADRUPEDS)
def test_bipeds_and_quadrupeds_get_different_cpu_twins_of_the_locomotion_preset(task):
    """The Go1 stands still at its home pose and keeps it under small noise, T1, G1 and Berkeley Humanoid fall within
    ~50 steps, so the two kinds of robot have different CPU presets; purejaxql's GPU preset is the same for both."""
    assert task_preset(task) == "locomotion"
    choice = choose_preset({**composed([f"task={task}"]), "device": "cpu"}, "locomotion", alg_on_command_line=False)
    assert choice.preset == ("locomotion_humanoid_cpu" if task in BIPEDS else "locomotion_cpu")


def test_the_body_lists_name_every_legged_task_once():
    """The ten biped and nine quadruped tasks of Playground's locomotion release, none in both lists."""
    assert len(BIPEDS) == 10 and len(QUADRUPEDS) == 9 and not set(BIPEDS) & set(QUADRUPEDS)


def test_preset_choice_names_the_preset_the_reason_and_how_to_force_the_gpu_one():
    config = {**composed(["task=WalkerRun"]), "device": "cpu"}
    choice = choose_preset(config, "dm_suite", alg_on_command_line=False)
    assert choice.preset == "cpu"
    reason = "device cpu" if torch.cuda.is_available() else "no CUDA here"
    assert choice.message == (
        f"{reason}: running WalkerRun with the CPU-sized preset alg=cpu instead of its GPU-sized "
        "'dm_suite' preset; to run that one anyway: python scripts/train.py task=WalkerRun "
        "alg=dm_suite"
    )
    assert choose_preset(config, "dm_suite", alg_on_command_line=True) == PresetChoice(None, "")  # alg= always wins
    assert choose_preset({**config, "resume": "outputs/run"}, "dm_suite", False) == PresetChoice(None, "")
    assert choose_preset(config, "cpu", False) == PresetChoice(None, "")  # already CPU-sized
    orphan = choose_preset({**config, "cpu_presets": {"dm_suite": "cpu"}}, "locomotion", False)
    assert orphan.preset is None and "'locomotion' preset of WalkerRun has no CPU-sized twin" in orphan.message
    if torch.cuda.is_available():
        assert choose_preset({**config, "device": "cuda"}, "dm_suite", False) == PresetChoice(None, "")
    else:
        with pytest.raises(ValueError, match="no usable CUDA"):
            choose_preset({**config, "device": "cuda"}, "dm_suite", False)
