"""pqn-torch: actor-critic PQN in PyTorch on batched MuJoCo Warp environments."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="pqn-torch",
    version="0.1.0",
    description="Actor-critic PQN (Parallel Q-Networks) for continuous control in PyTorch on MuJoCo Warp",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pqn_torch", "pqn_torch.*"]),
    # Third-party robot model data (MuJoCo Playground 0.2.0 scenes, heightfield, licences, NOTICE).
    package_data={
        "pqn_torch": [
            "third_party/playground/LICENSE",
            "third_party/playground/NOTICE",
            "third_party/playground/licenses/*",
            "third_party/playground/locomotion/*/xmls/*.xml",
            "third_party/playground/locomotion/*/xmls/assets/*.png",
            "third_party/playground/manipulation/*/xmls/*.xml",
            "third_party/playground/menagerie/*/*.xml",
        ]
    },
    python_requires=">=3.10",
    install_requires=[
        # Install your CUDA build of torch first on a GPU machine; a bare requirement would pull one anyway.
        "torch>=2.13.0",
        "mujoco>=4.0.0",
        "mujoco-warp>=4.0.0",
        "warp-lang>=1.19.0",
        "tensordict>=0.15.3",
        "hydra-core>=1.3.8",
        "tensorboard>=2.21.0",
        "dm_control>=1.0.50",  # ships the DM Control Suite MJCF files
        "numpy>=2.0",
        "tqdm>=4.66",  # training progress bar
    ],
    extras_require={
        # tests, the linter/formatter and the type checker CI runs first: bounded to the releases the suite is tested
        # with (9.0.3 and 9.2.0 for pytest), so that a new release cannot turn CI red by itself
        "dev": ["pytest>=9.0,<9.3", "ruff==0.17.6", "mypy==2.4.1"],
        # scripts/export.py: torch's ONNX exporter needs onnx and onnxscript; onnxruntime checks the export
        "export": ["onnx>=1.18", "onnxscript>=0.5", "onnxruntime>=1.20"],
        "video": ["av>=14.0"],  # evaluate.py video=true: PyAV's wheels carry FFmpeg's encoders
        "plot": ["matplotlib>=3.8"],  # scripts/plot.py and the plot train.py leaves in each run dir
        # Robot meshes for videos (visual only; the physics never needs them): `mujoco-menagerie prefetch <robot>`.
        "meshes": ["mujoco-menagerie>=2026.10.4"],
    },
)
