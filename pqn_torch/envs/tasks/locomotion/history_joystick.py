"""The base of MuJoCo Playground 0.2.0's joysticks whose observation is a stack of recent frames (Barkour, OP3).

What :class:`HistoryJoystick` does the same way for both (each robot's file adds its scene, frame and reward):

- Reset: the home keyframe exactly (no random offset, root at rest), ``ctrl`` 0 until the first action, as
  Playground's ``make_data(qpos=home, qvel=0)``.
- Command ``[vx, vy, yaw rate]`` drawn uniformly from per-axis ranges (with probability
  :attr:`HistoryJoystick.zero_command_probability` it is 0 instead), drawn again when the step counter passes
  :data:`COMMAND_STEPS`; the counter then restarts, as it does on termination.
- Observation: the last :attr:`HistoryJoystick.history_length` frames, newest first, each clipped to
  +-100 and then noised by ``U(-1, 1) * obs_noise_level * 0.05``. A reset fills the newest slot with its frame
  and the older ones with zeros (Playground starts from an empty history); every step shifts the stack by one
  frame. The critic sees the same stack (Playground has no privileged observation here).
- Termination cost ``1[terminated and step < 500]`` (Playground's: counted only before the counter's
  command change).

Task state: ``command`` [N, 3], ``step`` (the counter), ``obs_history`` [N, frames * frame size], ``last_act``.
"""

from __future__ import annotations

from typing import ClassVar

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics, sensor_slice
from pqn_torch.envs.tasks import reward_terms as terms
from pqn_torch.envs.tasks.base import StartStates, TaskState
from pqn_torch.envs.tasks.common import add_body_sensor, uniform
from pqn_torch.envs.tasks.robot_task import JoystickTask

COMMAND_STEPS = 500
"""Control steps after which the step counter restarts and the command is drawn again."""
FRAME_CLIP = 100.0
FRAME_NOISE = 0.05
TRACKING_SIGMA = 0.25
TORSO_POSITION_SENSOR = "torso_position"


def stacked_layout(frame: tuple[tuple[str, int], ...], frames: int) -> tuple[tuple[str, int], ...]:
    """The observation layout of ``frames`` stacked frames of layout ``frame``, newest (t-0) first."""
    return tuple((f"frame t-{age}: {name}", size) for age in range(frames) for name, size in frame)


class HistoryJoystick(JoystickTask):
    """Commands, the step counter, the frame stack and the home reset of Barkour and OP3 (module docstring)."""

    start_ctrl_source = "zeros"  # as Playground's ``make_data`` leaves them
    frame_size: ClassVar[int]
    history_length: ClassVar[int]
    command_range: ClassVar[tuple[tuple[float, float, float], tuple[float, float, float]]]
    """(low, high) of ``[vx, vy, yaw rate]``."""
    zero_command_probability: ClassVar[float] = 0.0
    command_scale: ClassVar[tuple[float, float, float]] = (1.0, 1.0, 1.0)
    """The command's factors in the observation frame."""
    torso: ClassVar[str]
    """The body whose height ends an episode (Playground's ``data.xpos[torso, 2]``)."""
    noise_scales = {"frame": FRAME_NOISE}

    @staticmethod
    def add_torso_position_sensor(spec: mujoco.MjSpec, torso: str) -> None:
        """World position of the torso body's frame, for the fall test."""
        add_body_sensor(spec, TORSO_POSITION_SENSOR, mujoco.mjtSensor.mjSENS_FRAMEPOS, torso)

    def bind(self, mj_model: mujoco.MjModel, device: torch.device, dtype: torch.dtype) -> None:
        super().bind(mj_model, device, dtype)
        self.command_low, self.command_high = (self.constant(limits) for limits in self.command_range)
        self.command_factors = self.constant(self.command_scale)
        self._torso_position = sensor_slice(mj_model, TORSO_POSITION_SENSOR)

    def torso_height(self, physics: Physics) -> torch.Tensor:
        """World height of the torso body's frame [N]."""
        return physics.sensordata[:, self._torso_position][:, 2]

    def sample_start(self, generator: torch.Generator, num: int, physics: Physics) -> StartStates:
        qvel = torch.zeros(num, physics.qvel.shape[1], dtype=physics.dtype, device=physics.device)
        return StartStates(qpos=self.home_qpos.repeat(num, 1), qvel=qvel)

    # ----------------------------------------------------------------- task state
    def initial_state(self, generator: torch.Generator, num: int, physics: Physics) -> TaskState:
        like = physics.qpos
        state = super().initial_state(generator, num, physics)
        state["command"] = self.sample_command(generator, num, like)
        state["step"] = like.new_zeros(num, dtype=torch.int64)
        state["obs_history"] = like.new_zeros(num, self.history_length * self.frame_size)
        return state

    def sample_command(self, generator: torch.Generator, num: int, like: torch.Tensor) -> torch.Tensor:
        """[num, 3] commands U(low, high) per axis; all three 0 with :attr:`zero_command_probability` (or the
        held ``fixed_command``)."""
        command = uniform(generator, (num, 3), self.command_low, self.command_high, like=like)
        if self.zero_command_probability == 0.0:
            return self.held(command)
        zero = uniform(generator, (num, 1), 0.0, 1.0, like=like) < self.zero_command_probability
        return self.held(torch.where(zero, 0.0, command))

    def after_reset(self, physics: Physics, state: TaskState, reset: torch.Tensor, generator: torch.Generator) -> None:
        """The reset frame in the newest slot, zeros in the older ones (noise drawn for every world)."""
        frame = self.noisy_frame(physics, state, generator)
        seeded = torch.cat([frame, frame.new_zeros(frame.shape[0], (self.history_length - 1) * self.frame_size)], -1)
        state["obs_history"].copy_(torch.where(reset.unsqueeze(-1), seeded, state["obs_history"]))

    # ----------------------------------------------------------------- observation
    def frame(self, physics: Physics, state: TaskState) -> torch.Tensor:
        """One clean observation frame [N, frame_size]: angular velocity (:meth:`gyro_reading`), the torso's up
        axis, the command times :attr:`command_scale`, joint angles - home pose, the last action."""
        q, _ = self.joints(physics)
        return torch.cat(
            [
                self.gyro_reading(physics),
                self.read(physics, "upvector"),
                state["command"] * self.command_factors,
                q - self.default_pose,
                state["last_act"],
            ],
            dim=-1,
        )

    def gyro_reading(self, physics: Physics) -> torch.Tensor:
        """The frame's angular velocity part: the whole gyro (OP3); Barkour keeps only a scaled yaw rate."""
        return self.read(physics, "gyro")

    def base_motion_terms(self, physics: Physics, command: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unscaled terms both robots share: velocity tracking, vertical bounce, roll/pitch rate and tilt."""
        return {
            **self.tracking_terms(physics, command, TRACKING_SIGMA),
            "lin_vel_z": terms.lin_vel_z(self.read(physics, "global_linvel")),
            "ang_vel_xy": terms.ang_vel_xy(self.read(physics, "global_angvel")),
            "orientation": terms.orientation(self.read(physics, "upvector")),
        }

    def noisy_frame(self, physics: Physics, state: TaskState, generator: torch.Generator) -> torch.Tensor:
        """:meth:`frame` clipped to +-100, then noised (Playground clips before it adds the noise)."""
        return self.noise(generator, self.frame(physics, state).clamp(-FRAME_CLIP, FRAME_CLIP), "frame")

    def push_frame(self, state: TaskState, frame: torch.Tensor) -> torch.Tensor:
        """Shift the stack by one frame, ``frame`` newest; returns the new stack (a copy: the observation)."""
        history = state["obs_history"]
        history.copy_(torch.cat([frame, history[:, : -self.frame_size]], dim=-1))
        return history.clone()

    def observe(
        self, physics: Physics, state: TaskState, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        history = state["obs_history"].clone()
        return history, history

    # ----------------------------------------------------------------- bookkeeping
    def termination_cost(self, state: TaskState, terminated: torch.Tensor) -> torch.Tensor:
        """``1[terminated and step < 500]`` (the counter before this step's update)."""
        return (terminated & (state["step"] < COMMAND_STEPS)).to(self.dtype)

    def advance_counter(self, state: TaskState, terminated: torch.Tensor, generator: torch.Generator) -> None:
        """Count the step; past :data:`COMMAND_STEPS` draw a new command; restart the counter then and on
        termination (Playground's bookkeeping order)."""
        step = state["step"]
        step.add_(1)
        due = step > COMMAND_STEPS
        fresh = self.sample_command(generator, step.shape[0], state["command"])
        state["command"].copy_(torch.where(due.unsqueeze(-1), fresh, state["command"]))
        step.masked_fill_(due | terminated, 0)
