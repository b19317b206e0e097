"""Helpers shared by the robot task files: MuJoCo Playground 0.2.0 scenes, sensors, noise, quaternions.

The scenes are Playground's own task XMLs, shipped unmodified as third-party model data in
``pqn_torch/third_party/playground`` (Apache-2.0; see its NOTICE). They reference MuJoCo Menagerie's
visual meshes, which are not shipped: every mesh geom in these robots is visual only (no collisions, no
mass), so :func:`load_playground_scene` drops them with their mesh assets, which leaves the dynamics
unchanged. Where the robot's meshes are already on disk, they are loaded instead, for videos that show the
robot: a Menagerie checkout named by ``MENAGERIE_ROOT``, or the cache of the optional ``mujoco-menagerie``
package (``pip install pqn-torch[meshes]``, then ``mujoco-menagerie prefetch unitree_go1`` once). Nothing is
ever downloaded here.
"""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import torch

from pqn_torch.envs.tasks.common import uniform

PLAYGROUND_DIR = Path(__file__).resolve().parents[2] / "third_party" / "playground"
MENAGERIE_XML_DIR = PLAYGROUND_DIR / "menagerie"
"""Menagerie robot XMLs that Playground scenes include (Panda's ``mjx_panda.xml``), one folder per robot."""
MENAGERIE_ROOT_VARIABLE = "MENAGERIE_ROOT"


def load_playground_scene(
    relative_path: str, menagerie_robot: str | tuple[str, ...], menagerie_includes: tuple[str, ...] = ()
) -> mujoco.MjSpec:
    """The Playground scene ``relative_path`` (under ``third_party/playground``), ready to compile.

    ``menagerie_robot``: the Menagerie robot folder(s) whose meshes the scene uses (several for a robot built
    from parts: a Panda arm with a Robotiq gripper). ``menagerie_includes``: Menagerie XMLs the scene includes
    by file name (Playground resolves them in its Menagerie checkout), read from
    ``third_party/playground/menagerie/<first menagerie_robot>/``. Visual mesh geoms and mesh assets are
    removed unless ``$MENAGERIE_ROOT/<robot>/assets`` exists for every robot; file textures (not shipped,
    visual only; cube maps too) are removed and the materials that used them keep their colour.
    """
    path = PLAYGROUND_DIR / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"robot scene {path} is missing; reinstall pqn-torch (its package data)")
    robots = (menagerie_robot,) if isinstance(menagerie_robot, str) else menagerie_robot
    includes = {name: (MENAGERIE_XML_DIR / robots[0] / name).read_bytes() for name in menagerie_includes}
    spec = mujoco.MjSpec.from_file(str(path), include=includes)
    # The XMLs point meshdir at Playground's Menagerie checkout; MuJoCo also resolves heightfield files
    # there. Mesh files get absolute paths below, so meshdir can point at the scene's own folder.
    spec.meshdir = str(path.parent)
    mesh_dirs = [mesh_dir for mesh_dir in map(_menagerie_mesh_dir, robots) if mesh_dir is not None]
    if len(mesh_dirs) < len(robots):
        _drop_visual_meshes(spec)
    else:
        for mesh in spec.meshes:
            mesh.file = str(_mesh_file(mesh_dirs, mesh.file, path.parent))
    dropped = set()
    for texture in list(spec.textures):
        if texture.file or any(texture.cubefiles):  # a file, or six (a cube's faces: Aloha's socket)
            dropped.add(texture.name)
            spec.delete(texture)
    for material in spec.materials:
        material.textures = ["" if name in dropped else name for name in material.textures]
    return spec


def _mesh_file(mesh_dirs: list[Path], file: str, scene_dir: Path) -> Path:
    """The mesh ``file`` (as MjSpec holds it: prefixed with the scene's folder) under the robots' Menagerie
    ``assets`` folders, the first that holds it: at its path below the scene's folder where that file exists
    (OP3's ``simplified_convex/body.stl`` beside a visual ``body.stl``), else by its file name (a Panda arm's
    or its Robotiq gripper's folder)."""
    name = Path(file)
    below = [mesh_dir / name.relative_to(scene_dir) for mesh_dir in mesh_dirs] if name.is_relative_to(scene_dir) else []
    by_name = [mesh_dir / name.name for mesh_dir in mesh_dirs]
    return next((candidate for candidate in below + by_name if candidate.is_file()), by_name[0])


def _menagerie_mesh_dir(robot: str) -> Path | None:
    """The robot's Menagerie ``assets`` folder if it is on disk (``MENAGERIE_ROOT``, else the package cache)."""
    root = os.environ.get(MENAGERIE_ROOT_VARIABLE)
    if root:
        assets = Path(root) / robot / "assets"
    else:
        try:
            import mujoco_menagerie
        except ImportError:
            return None
        cache, entry = mujoco_menagerie.Cache(), mujoco_menagerie.get(robot)
        if not cache.is_cached(entry):  # only what the user fetched: no download at train or test time
            return None
        assets = Path(cache.model_path(entry)) / "assets"
    return assets if assets.is_dir() else None


def _drop_visual_meshes(spec: mujoco.MjSpec) -> None:
    """Delete every mesh geom (all are visual in Playground's robots: no collision bits, in no ``<pair>``, named
    by no contact sensor; checked here) and every mesh asset."""
    in_contacts = {name for pair in spec.pairs for name in (pair.geomname1, pair.geomname2)}
    for sensor in spec.sensors:
        if sensor.type == mujoco.mjtSensor.mjSENS_CONTACT:
            in_contacts.update(
                name
                for kind, name in ((sensor.objtype, sensor.objname), (sensor.reftype, sensor.refname))
                if kind == mujoco.mjtObj.mjOBJ_GEOM
            )
    for geom in list(spec.geoms):
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
            if geom.contype or geom.conaffinity or (geom.name and geom.name in in_contacts):
                raise ValueError(f"mesh geom {geom.name!r} collides; it cannot be dropped without changing physics")
            spec.delete(geom)
    for mesh in list(spec.meshes):
        spec.delete(mesh)


def add_gravity_sensor(spec: mujoco.MjSpec, name: str, site: str) -> None:
    """World z-axis in the frame of ``site``: minus the gravity direction Playground reads from ``site_xmat``.

    Playground computes ``site_xmat.T @ [0, 0, -1]``; the world body's z-axis expressed in the site frame
    is ``site_xmat.T @ [0, 0, 1]``, so the task negates this sensor.
    """
    spec.add_sensor(
        name=name,
        type=mujoco.mjtSensor.mjSENS_FRAMEZAXIS,
        objtype=mujoco.mjtObj.mjOBJ_XBODY,
        objname="world",
        reftype=mujoco.mjtObj.mjOBJ_SITE,
        refname=site,
    )


def add_actuator_force_sensors(spec: mujoco.MjSpec) -> list[str]:
    """One ``actuatorfrc`` sensor per actuator (Playground reads ``data.actuator_force``); their names, in order."""
    names = []
    for actuator in spec.actuators:
        names.append(f"{actuator.name}_force")
        spec.add_sensor(
            name=names[-1],
            type=mujoco.mjtSensor.mjSENS_ACTUATORFRC,
            objtype=mujoco.mjtObj.mjOBJ_ACTUATOR,
            objname=actuator.name,
        )
    return names


def add_site_position_sensor(spec: mujoco.MjSpec, name: str, site: str) -> None:
    """World position of ``site`` (Playground's ``data.site_xpos``)."""
    spec.add_sensor(name=name, type=mujoco.mjtSensor.mjSENS_FRAMEPOS, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=site)


def set_position_gains(spec: mujoco.MjSpec, kp: float, kd: float) -> None:
    """Playground's PD edit: every position actuator gets stiffness ``kp``, every hinge joint damping ``kd``."""
    for actuator in spec.actuators:
        actuator.gainprm[0] = kp
        actuator.biasprm[1] = -kp
    for joint in spec.joints:
        if joint.type == mujoco.mjtJoint.mjJNT_HINGE:
            joint.damping[0] = kd


def noisy(generator: torch.Generator, value: torch.Tensor, scale: float) -> torch.Tensor:
    """Playground's observation noise: ``value + U(-1, 1) * scale`` (``scale`` includes the noise level)."""
    if scale == 0.0:
        return value
    return value + uniform(generator, tuple(value.shape), -1.0, 1.0, like=value) * scale


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of quaternions ``[w, x, y, z]`` (batched over leading dims)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def yaw_quaternion(yaw: torch.Tensor) -> torch.Tensor:
    """Rotation by ``yaw`` [N] about the world z-axis, as quaternions [N, 4]."""
    zeros = torch.zeros_like(yaw)
    return torch.stack([torch.cos(yaw / 2), zeros, zeros, torch.sin(yaw / 2)], dim=-1)


def soft_limits(low: torch.Tensor, high: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint limits shrunk about their midpoint to ``factor`` of the range (Playground's getup/handstand)."""
    middle, half = (low + high) / 2, (high - low) / 2
    return middle - factor * half, middle + factor * half
