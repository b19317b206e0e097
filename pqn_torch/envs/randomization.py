"""Domain randomization: per-world model parameters drawn from a task's declarative table, on either backend.

A task lists its draws as :class:`Draw` rows (``Task.randomization``; MuJoCo Playground 0.2.0's randomizers
for the robots it ships one for). With the task option ``randomize=true`` the env draws every world's
parameters once, from its own seeded generator, before it builds its start states; with
``randomize_every_reset=true`` as well, a world gets new ones each time it resets. The drawn values are
written into the physics' per-world model fields (:meth:`Physics.model_field`: ``mujoco.batch.Batch.expand``
on native MuJoCo, batched model arrays on MuJoCo Warp), with no host round trip per step on the GPU.

Then the constants MuJoCo derives from those fields are recomputed for the drawn worlds
(:meth:`Physics.recompute_constants`, i.e. ``mj_setConst``): a body's mass changes ``body_subtreemass``
and the inverse inertias at ``qpos0`` (``dof_invweight0``, ``body_invweight0``, which scale the constraint
solver's regularization) and ``actuator_acc0``; ``qpos0``, the armature and the centre of mass change the
inverse inertias too. So each randomized world is the model MuJoCo would compile with those values.
(Playground's MJX randomizer leaves the derived constants at the nominal model's values.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import mujoco
import torch

from pqn_torch.envs.physics.base import Physics

Operation = Literal["set", "scale", "add"]


@dataclass(frozen=True)
class Draw:
    """One randomized part of a model field: ``field[rows, column] (op) U(low, high)``, one draw per entry.

    ``rows``: the object's name (the field's kind: ``geom_*`` geoms, ``body_*`` bodies, ``pair_*`` contact
    pairs), several names, a slice of the field's rows, or ``None`` for all of them; ``column``: a column (or a
    slice of columns) of a 2-d field (``geom_friction`` 0 = sliding) or ``None`` for all. ``op``: ``set`` the
    value, ``scale`` it (x U) or ``add`` to it (+ U). ``shared``: one draw per world for all the entries
    (G1's one friction for both feet). ``also``: ``(field, column)`` parts at the same rows that the same draw
    changes the same way (a position actuator's gain and the bias term that must stay its negative). Rows
    apply in order, each on the result of the previous ones (a mass scaled, then a torso mass added).
    """

    field: str
    op: Operation
    low: float
    high: float
    rows: str | tuple[str, ...] | slice | None = None
    column: int | slice | None = None
    shared: bool = False
    also: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.op not in ("set", "scale", "add"):
            raise ValueError(f"Draw op must be set, scale or add, got {self.op!r}")
        if not self.low <= self.high:
            raise ValueError(f"Draw of {self.field}: low ({self.low}) must be <= high ({self.high})")

    def index(self, mj_model: mujoco.MjModel, column: int | slice | None = None) -> tuple[int | slice | list[int], ...]:
        """The entries this row draws (or, with ``column``, that column of the same rows), as an index into a
        field's [N, ...] per-world values."""
        rows: int | slice | list[int]
        if isinstance(self.rows, (str, tuple)):
            kind = getattr(mj_model, self.field.split("_")[0])
            ids = [kind(name).id for name in ((self.rows,) if isinstance(self.rows, str) else self.rows)]
            rows = ids[0] if isinstance(self.rows, str) else ids
        else:
            rows = self.rows if self.rows is not None else slice(None)
        column = self.column if column is None else column
        return (slice(None), rows) if column is None else (slice(None), rows, column)


def _applied(op: Operation, part: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """``part`` with ``sample`` (broadcast to it) set, multiplied in or added, as ``op`` says."""
    if op == "set":
        return sample.expand_as(part)
    return part * sample if op == "scale" else part + sample


def randomized_fields(draws: tuple[Draw, ...]) -> tuple[str, ...]:
    """The model fields a table writes, each once, in order."""
    return tuple(dict.fromkeys(name for draw in draws for name in (draw.field, *(field for field, _ in draw.also))))


class DomainRandomizer:
    """Draws a task's table for chosen worlds and writes it into the physics' per-world model fields."""

    def __init__(self, draws: tuple[Draw, ...], physics: Physics) -> None:
        self.draws = draws
        self.physics = physics
        model = physics.mj_model
        self._nominal = {
            name: torch.as_tensor(getattr(model, name), dtype=torch.float64, device=physics.device)
            for name in randomized_fields(draws)
        }
        self._indices = [
            [(draw.field, draw.index(model))] + [(field, draw.index(model, column)) for field, column in draw.also]
            for draw in draws
        ]

    def draw(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Every world's parameters [N, ...] per field (float64, from ``generator``; every world, always)."""
        num = self.physics.num_worlds
        values = {name: nominal.expand(num, *nominal.shape).clone() for name, nominal in self._nominal.items()}
        for draw, parts in zip(self.draws, self._indices, strict=True):
            first = values[draw.field][parts[0][1]]
            shape = (num,) + (1,) * (first.dim() - 1) if draw.shared else first.shape
            unit = torch.rand(shape, generator=generator, device=first.device, dtype=torch.float32)
            sample = draw.low + (draw.high - draw.low) * unit.to(torch.float64)  # float32 draws: same on every backend
            for name, index in parts:
                values[name][index] = _applied(draw.op, values[name][index], sample)
        return values

    def write(self, parameters: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        """``parameters`` (from :meth:`draw`: all worlds, so the generator's stream never depends on the mask)
        into the worlds in ``mask`` [N], then their derived constants; the other worlds keep theirs."""
        for name, value in parameters.items():
            view = self.physics.model_field(name)
            selected = mask.view(-1, *[1] * (view.dim() - 1))
            view.copy_(torch.where(selected, value.to(view.dtype).view_as(view), view))
        self.physics.recompute_constants(mask)
