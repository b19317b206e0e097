"""A checkpoint's policy as an ONNX file for deployment, checked with onnxruntime, plus a JSON sidecar.

The ONNX graph is :class:`pqn_torch.policy.Policy`: input ``obs`` [batch, obs_dim] float32 (raw
observations, as the env produces them), output ``action`` [batch, action_dim] float32 in the env's
action range; the observation normalization and the action scaling are inside, the batch dimension
is dynamic. The ONNX file describes itself in its ``metadata_props`` (string values, JSON-encoded; see
:func:`policy_metadata`): task, control period, observation layout, action size and range, how an action
becomes the actuators' ``ctrl``, and for robot tasks the joints, their PD gains and default pose. The JSON
sidecar (same name, ``.json``) repeats that metadata and adds the training statistics and the verification
result. Needs the ``export`` extra (onnx, onnxscript for torch's exporter, onnxruntime).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
import torch

from pqn_torch.envs import BatchedEnv, make_env
from pqn_torch.envs.tasks import get_task_class
from pqn_torch.envs.tasks.base import ControlMapping, Task
from pqn_torch.policy import Policy
from pqn_torch.training.run_dir import output_file_problem

SIDECAR_FORMAT = 2
METADATA_FORMAT = "pqn-torch policy 1"
MAX_ABS_DIFF = 1e-4
"""Largest difference (in action units per unit of action half-range) accepted between onnxruntime and torch."""
RANDOM_OBSERVATIONS = 4096
REAL_ROLLOUT = (16, 250)
"""Worlds and control steps of the rollout of the policy whose observations check the export."""


class ExportUnavailable(RuntimeError):
    """The ``export`` extra (onnx, onnxscript, onnxruntime) is not installed."""


@dataclass
class ExportResult:
    """Where the files went and how closely onnxruntime reproduces the torch policy."""

    onnx_path: Path
    sidecar_path: Path
    random_max_abs_diff: float
    real_max_abs_diff: float
    num_random: int
    num_real: int
    rollout_obs_min: list[float]
    rollout_obs_max: list[float]


def default_output(policy: Policy) -> Path:
    """``policy_<checkpoint name>.onnx`` beside the checkpoint."""
    if policy.checkpoint is None:
        raise ValueError("this policy was not loaded from a checkpoint file; pass output=")
    checkpoint = Path(policy.checkpoint)
    return checkpoint.with_name(f"policy_{checkpoint.stem}.onnx")


def export_policy(policy: Policy, output: str | Path | None = None, seed: int = 0) -> ExportResult:
    """Write ``policy`` as ONNX plus sidecar, verify it with onnxruntime on the CPU, return the numbers.

    Verification feeds both runtimes ``RANDOM_OBSERVATIONS`` random observations (the training
    statistics' mean plus three standard deviations of Gaussian noise, which also saturates the tanh)
    and every observation of a short rollout of the policy in its own task (native MuJoCo), in batches
    of 1 and of all rows. Files that fail the check are removed again and ``ValueError`` names the error.
    Existing files are never replaced.
    """
    onnx, onnxruntime = _export_modules()
    onnx_path = Path(output) if output is not None else default_output(policy)
    if onnx_path.suffix != ".onnx":
        raise ValueError(f"output must be a .onnx file, got {str(onnx_path)!r}")
    sidecar_path = onnx_path.with_suffix(".json")
    problem = output_file_problem("output", onnx_path)
    if problem:
        raise ValueError(problem)
    for path in (onnx_path, sidecar_path):
        if path.exists():
            raise FileExistsError(f"{path} exists already; choose another output= or remove it")
    if policy.device.type != "cpu":
        policy = copy.deepcopy(policy).to("cpu")  # the caller's policy stays where it is
    generator = torch.Generator().manual_seed(seed)
    random_obs = _random_observations(policy, generator)
    worlds, steps = REAL_ROLLOUT
    env = make_env(
        policy.task, worlds, "cpu", "mujoco", seed, reset_pool_size=worlds, num_threads=1, **policy.task_overrides
    )
    real_obs = _rollout_observations(policy, env, steps)
    metadata = policy_metadata(policy, env.task, env.physics.mj_model)

    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    _write_onnx(policy, random_obs[:2], onnx_path, metadata)
    try:
        onnx.checker.check_model(str(onnx_path))
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        differences = {
            name: _max_abs_diff(policy, session, obs) for name, obs in (("random", random_obs), ("real", real_obs))
        }
        limit = MAX_ABS_DIFF * float(policy.actor.action_scale.max())
        if max(differences.values()) > limit:
            raise ValueError(
                f"onnxruntime differs from the torch policy by up to {max(differences.values()):.2e} "
                f"(> {limit:.1e}); not exporting {onnx_path}"
            )
        result = ExportResult(
            onnx_path,
            sidecar_path,
            differences["random"],
            differences["real"],
            len(random_obs),
            len(real_obs),
            real_obs.amin(0).tolist(),
            real_obs.amax(0).tolist(),
        )
        _write_json(sidecar_path, sidecar(policy, result, onnxruntime.__version__, metadata))
    except BaseException:
        onnx_path.unlink(missing_ok=True)
        raise
    return result


def policy_metadata(policy: Policy, task: Task, mj_model: mujoco.MjModel) -> dict[str, str]:
    """The ONNX file's ``metadata_props``: what a program needs to run the policy on a robot, values as JSON.

    Keys: ``format``, ``task``, ``task_overrides``, ``env_steps``, ``ctrl_dt`` (seconds per control step: the
    control formula runs once per control step), ``action_repeat`` (control steps per action, each applying the
    same action) and ``action_dt`` (seconds between actions), ``obs_dim``, ``observation_names`` and
    ``observation_sizes`` (null where the task documents no layout), ``observation_delay`` (the observation is
    a frame this many control steps old, [0, 0]: current), ``action_dim``, ``action_low``, ``action_high``,
    ``control_mode`` (a key of :data:`~pqn_torch.envs.tasks.base.CONTROL_FORMULAS`), ``action_scale``,
    ``control`` (the formula in words), ``control_clipped`` (the result clipped to ``ctrlrange``),
    ``clip_low``/``clip_high`` (the bounds the result is clipped to, per action actuator; null: none),
    ``action_actuators`` (the actuators the formula drives), ``fixed_ctrl`` (actuator -> constant ctrl),
    ``action_delay`` (each control step applies the action d in this range of control steps old),
    ``start_ctrl_source`` and ``start_ctrl`` (the ``ctrl`` before the first action: ``"joint_pos"`` with
    null, or the values), ``control_standalone`` (false: the mapping needs more than this metadata) and
    ``control_parameters`` (its numbers), ``actuator_names``, ``ctrl_low``, ``ctrl_high`` (the actuators'
    ``ctrlrange``, where MuJoCo clamps ``ctrl``); robot tasks add ``joint_names`` (the actuated joints, in
    actuator order), ``default_joint_pos``, ``joint_stiffness`` and ``joint_damping`` (torque = stiffness *
    (ctrl - q) - damping * qdot).
    """
    mapping = task.control_mapping()
    layout = task.observation_layout
    actuators = [mj_model.actuator(i).name for i in range(mj_model.nu)]
    fixed = dict(mapping.fixed_ctrl)
    unknown = sorted(set(fixed) - set(actuators))
    if unknown:
        raise ValueError(f"task {task.name}: fixed_ctrl names unknown actuators {unknown}; valid: {actuators}")
    driven = [index for index, name in enumerate(actuators) if name not in fixed]
    clip_low: list[float] | None
    clip_high: list[float] | None
    if mapping.clip_low is not None:
        clip_low, clip_high = list(mapping.clip_low), list(mapping.clip_high or ())
    elif mapping.clipped:
        clip_low, clip_high = (mj_model.actuator_ctrlrange[driven, side].tolist() for side in (0, 1))
    else:
        clip_low = clip_high = None
    metadata: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "task": policy.task,
        "task_overrides": policy.task_overrides,
        "env_steps": policy.env_steps,
        "ctrl_dt": policy.ctrl_dt,
        "action_repeat": task.config.action_repeat,
        "action_dt": policy.ctrl_dt * task.config.action_repeat,
        "obs_dim": policy.obs_dim,
        "observation_names": [name for name, _ in layout] if layout else None,
        "observation_sizes": [size for _, size in layout] if layout else None,
        "observation_delay": list(task.observation_delay),
        "action_dim": policy.action_dim,
        "action_low": policy.action_low.tolist(),
        "action_high": policy.action_high.tolist(),
        "control_mode": mapping.mode,
        "action_scale": mapping.scale,
        "control": mapping.formula,
        "control_clipped": mapping.clipped,
        "clip_low": clip_low,
        "clip_high": clip_high,
        "action_actuators": [actuators[index] for index in driven],
        "fixed_ctrl": fixed,
        "action_delay": list(mapping.action_delay),
        "start_ctrl_source": mapping.start_ctrl,
        "start_ctrl": _start_ctrl(mapping, mj_model),
        "control_standalone": mapping.standalone,
        "control_parameters": dict(mapping.parameters),
        "actuator_names": actuators,
        "ctrl_low": mj_model.actuator_ctrlrange[:, 0].tolist(),
        "ctrl_high": mj_model.actuator_ctrlrange[:, 1].tolist(),
    }
    if mapping.default_pose_keyframe is not None:
        metadata.update(_joint_metadata(mj_model, mapping.default_pose_keyframe))
    return {key: json.dumps(value) for key, value in metadata.items()}


def _start_ctrl(mapping: ControlMapping, mj_model: mujoco.MjModel) -> list[float] | None:
    """The ``ctrl`` before an episode's first action; ``None`` where it is the joint angles."""
    if mapping.start_ctrl == "keyframe_ctrl":
        assert mapping.default_pose_keyframe is not None  # robot tasks name their keyframe
        return mj_model.keyframe(mapping.default_pose_keyframe).ctrl.tolist()
    return None if mapping.start_ctrl == "joint_pos" else [0.0] * mj_model.nu


def _joint_metadata(mj_model: mujoco.MjModel, keyframe: str) -> dict[str, list]:
    """Actuated joints (one per position actuator, in action order): names, default pose, PD gains."""
    if not (mj_model.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT).all():
        raise ValueError("joint metadata needs every actuator to drive a joint")
    joints = mj_model.actuator_trnid[:, 0]
    return {
        "joint_names": [mj_model.joint(j).name for j in joints],
        "default_joint_pos": mj_model.keyframe(keyframe).qpos[mj_model.jnt_qposadr[joints]].tolist(),
        "joint_stiffness": mj_model.actuator_gainprm[:, 0].tolist(),
        "joint_damping": (mj_model.dof_damping[mj_model.jnt_dofadr[joints]] - mj_model.actuator_biasprm[:, 2]).tolist(),
    }


def sidecar(policy: Policy, result: ExportResult, onnxruntime_version: str, metadata: dict[str, str]) -> dict[str, Any]:
    """What a robot program needs next to the ONNX file (see the module docstring)."""
    normalizer = policy.obs_normalizer
    layout = get_task_class(policy.task).observation_layout
    return {
        "format": SIDECAR_FORMAT,
        "onnx": result.onnx_path.name,
        "task": policy.task,
        "task_overrides": policy.task_overrides,
        "checkpoint": policy.checkpoint,
        "env_steps": policy.env_steps,
        "input": {
            "name": "obs",
            "shape": ["batch", policy.obs_dim],
            "dtype": "float32",
            "meaning": "raw observation as the env produces it; normalization is inside the graph",
        },
        "output": {
            "name": "action",
            "shape": ["batch", policy.action_dim],
            "dtype": "float32",
            "meaning": "deterministic action, already in [action_low, action_high]",
        },
        "obs_dim": policy.obs_dim,
        "action_dim": policy.action_dim,
        "action_low": policy.action_low.tolist(),
        "action_high": policy.action_high.tolist(),
        "control_period_s": policy.ctrl_dt,
        "observation_layout": [{"name": name, "size": size} for name, size in layout] if layout else None,
        "onnx_metadata": {key: json.loads(value) for key, value in metadata.items()},
        "observation_statistics": None
        if normalizer is None
        else {
            "mean": normalizer.mean.tolist(),
            "std": normalizer.var.sqrt().tolist(),
            "note": "the training statistics the graph normalizes with; observations are otherwise unbounded",
        },
        "observation_range_in_rollout": {
            "min": result.rollout_obs_min,
            "max": result.rollout_obs_max,
            "note": f"per entry, over the {result.num_real} observations of the verification rollout in simulation",
        },
        "verification": {
            "runtime": f"onnxruntime {onnxruntime_version}, CPUExecutionProvider",
            "random_observations": result.num_random,
            "random_max_abs_diff": result.random_max_abs_diff,
            "rollout_observations": result.num_real,
            "rollout_max_abs_diff": result.real_max_abs_diff,
        },
    }


def _export_modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as error:
        raise ExportUnavailable(
            f"ONNX export needs the 'export' extra ({error.name} is missing): pip install 'pqn-torch[export]'"
        ) from None
    return onnx, onnxruntime


def _write_onnx(policy: Policy, example: torch.Tensor, path: Path, metadata: dict[str, str]) -> None:
    """torch's exporter (torch.export based), batch dimension dynamic, ``metadata`` as the model's
    ``metadata_props``; the exporter's internal chatter silenced."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside torch.export, not ours to fix
            program = torch.onnx.export(
                policy,
                (example,),
                input_names=["obs"],
                output_names=["action"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
    finally:
        onnx_logger.setLevel(level)
    assert program is not None  # the dynamo exporter always returns the program
    program.model.metadata_props.update(metadata)
    partial = path.with_name(path.name + ".partial")
    program.save(str(partial))
    os.replace(partial, path)


def _write_json(path: Path, content: dict[str, Any]) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(partial, path)


def _random_observations(policy: Policy, generator: torch.Generator) -> torch.Tensor:
    noise = 3.0 * torch.randn(RANDOM_OBSERVATIONS, policy.obs_dim, generator=generator, dtype=torch.float64)
    normalizer = policy.obs_normalizer
    if normalizer is None:
        return noise.float()
    return (normalizer.mean + normalizer.var.sqrt() * noise).float()


@torch.no_grad()
def _rollout_observations(policy: Policy, env: BatchedEnv, steps: int) -> torch.Tensor:
    """Every observation of a ``steps`` long rollout of ``policy`` in ``env``."""
    observations = [env.reset()["obs"]]
    for _ in range(steps - 1):
        observations.append(env.step(policy(observations[-1]))["obs"])
    return torch.cat(observations)


def _max_abs_diff(policy: Policy, session: Any, obs: torch.Tensor) -> float:
    """Largest |onnxruntime - torch| over all rows, run as one batch and as batches of one row."""
    expected = policy(obs).numpy()
    whole = session.run(["action"], {"obs": obs.numpy()})[0]
    single = np.concatenate([session.run(["action"], {"obs": row[None]})[0] for row in obs[:64].numpy()])
    return float(max(np.abs(whole - expected).max(), np.abs(single - expected[:64]).max()))
