"""Export a checkpoint's policy to ONNX (normalization and action scaling inside, deployment metadata in its
``metadata_props``: see pqn_torch/export.py) with a JSON sidecar.

    python scripts/export.py checkpoint=outputs/CheetahRun/<run dir> [output=<file>.onnx] [seed=0]

``checkpoint`` is a checkpoint file or a run dir (its latest checkpoint is used); ``output`` defaults
to ``policy_<checkpoint name>.onnx`` beside the checkpoint. The export is checked with onnxruntime
on the CPU against the torch policy; needs ``pip install 'pqn-torch[export]'``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pqn_torch.export import ExportUnavailable, export_policy
from pqn_torch.policy import Policy
from pqn_torch.training.options import UsageError, parse_options
from pqn_torch.training.schema import checkpoint_option, option


@dataclass
class ExportOptions:
    checkpoint: str = checkpoint_option()
    output: str | None = option(None, "an .onnx file to create (default: policy_<checkpoint>.onnx beside it)")
    seed: int = 0


def main(argv: list[str]) -> int:
    try:
        options = parse_options("export.py", argv, ExportOptions)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        policy = Policy.from_checkpoint(options.checkpoint)
        result = export_policy(policy, options.output, seed=options.seed)
    except (ValueError, FileNotFoundError, FileExistsError, ExportUnavailable) as error:
        print(f"export.py: {error}", file=sys.stderr)
        return 2
    print(
        f"{policy.task} policy ({policy.obs_dim} obs -> {policy.action_dim} actions, every {policy.ctrl_dt:g} s) "
        f"from {policy.checkpoint}\n"
        f"onnx: {result.onnx_path}\nsidecar: {result.sidecar_path}\n"
        f"onnxruntime (CPU) vs torch, max abs difference: {result.random_max_abs_diff:.2e} on "
        f"{result.num_random} random observations, {result.real_max_abs_diff:.2e} on {result.num_real} "
        f"observations of a rollout"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
