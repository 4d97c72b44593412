"""compressed-tensors: re-attaching the online rotations that transformers drops on reload.

transformers 5.17 does not know the matrices of compressed-tensors' online
transforms and drops them on reload (``UNEXPECTED`` keys), leaving a wrong
model; this rebuilds them from the checkpoint's own ``transform_config``. It
relies on how compressed-tensors names the stored matrices (``<group>_...``)
and on its factories' ``apply_to_model``: internals, hence the seam.
"""

from __future__ import annotations

from pathlib import Path

from harness.compat import Seam

SEAM = Seam(
    library="compressed-tensors",
    written_against="0.19.0",
    supported=">=0.19,<0.20",
    what="re-attaching online transforms (QuaRot/SpinQuant R3/R4, QuIP) from a checkpoint's transform_config",
)


def attach_online_transforms(model, model_dir: Path) -> int:
    """Re-attach the online rotations a compressed-tensors checkpoint declares; returns how many.

    Fused rotations live in the weights and reload by themselves; online ones
    (llmcompressor's QuIP ``v``, SpinQuant R3/R4) are hooks holding a matrix, and
    transformers 5.17 drops those matrices on reload (``UNEXPECTED`` keys), which
    leaves a wrong model. This rebuilds the hooks from the checkpoint's own
    ``transform_config`` with compressed-tensors' factories and copies in the
    stored matrices (their dtype included: a float64 rotation where float32 was
    used flips 4-bit activation roundings).
    """
    import json

    SEAM.require()
    from compressed_tensors.transform import TransformBase, TransformConfig, TransformFactory
    from safetensors import safe_open

    cfg = json.loads((Path(model_dir) / "config.json").read_text()).get("quantization_config") or {}
    if not cfg.get("transform_config"):
        return 0
    config = TransformConfig.model_validate(cfg["transform_config"])
    attached = 0
    for name, scheme in config.config_groups.items():
        online = [args for args in scheme.apply if args.is_online()]
        if online:
            TransformFactory.from_scheme(scheme.model_copy(update={"apply": online}), name=name).apply_to_model(
                model, use_tqdm=False
            )
    stored: dict[str, object] = {}
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            stored.update({k: f.get_tensor(k) for k in f.keys() if any(f"{n}_" in k for n in config.config_groups)})
    for module_name, module in model.named_modules():
        if isinstance(module, TransformBase):
            attached += 1
            for key in ("weight", "perm"):
                tensor = stored.get(f"{module_name}.{key}")
                if tensor is not None and getattr(module, key, None) is not None:
                    getattr(module, key).data = tensor.to(getattr(module, key).device)
    return attached
