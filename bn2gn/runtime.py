"""Runtime half of patch-trainer: freeze the backbone BatchNorm and keep it frozen.

These functions are the single source of truth for the logic bn2gn injects into training code:
``bn2gn patch-trainer`` copies their source (see ``bn2gn.source.rules.bn2gn202_freeze_helper``) with the
plan's backbone entries as the default argument, and ``bn2gn demo`` / ``bn2gn verify`` and
the tests call them from here. So they must stay self-contained: no module-level torch import,
standard-library imports inside the function bodies, and only each other as helpers.

A module is in the backbone when a whole component of its ``named_modules()`` path, taken on the
unwrapped model, is a backbone attribute name (``backbone``, ``base_layer``, ``--backbone-attr``),
or when it sits under attribute ``attr`` of an instance of class ``Root`` for an entry
``"Root.attr"``: the backbones ``bn2gn scan`` inferred from pretrained weights (docs/concepts/decisions.md).
"""

#: the default backbone attribute names (``bn2gn.core.settings.DEFAULT_BACKBONE_NAMES``; this module imports
#: nothing of bn2gn, as training code imports it)
DEFAULT_BACKBONE_ATTRS = ("backbone", "base_layer")


def unwrap_model(model):
    """The network inside DataParallel/DDP (``.module``) and wrapper objects (``.model``)."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        inner = getattr(model, "module", None)
        if not hasattr(inner, "named_modules"):
            inner = getattr(model, "model", None)
        if not hasattr(inner, "named_modules"):
            break
        model = inner
    return model


def backbone_modules(network, backbone_attrs=DEFAULT_BACKBONE_ATTRS):
    """Yield (path, module) for every module of ``network`` inside the backbone."""
    names, owned = set(), {}
    for entry in backbone_attrs:
        owner, dot, attr = entry.rpartition(".")
        if dot:
            owned.setdefault(owner, set()).add(attr)
        else:
            names.add(entry)
    modules = list(network.named_modules())
    prefixes = set()
    for path, module in modules:
        for klass in type(module).__mro__:
            for attr in owned.get(klass.__name__, ()):
                prefixes.add(f"{path}.{attr}" if path else attr)
    for path, module in modules:
        parts = path.split(".") if path else []
        if any(part in names for part in parts) or any(
            ".".join(parts[:i]) in prefixes for i in range(1, len(parts) + 1)
        ):
            yield path, module


def backbone_batchnorms(model, backbone_attrs=DEFAULT_BACKBONE_ATTRS):
    """Yield (path, module) for each backbone BatchNorm (any _BatchNorm, SyncBatchNorm too)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    network = unwrap_model(model)
    if not hasattr(network, "named_modules"):
        raise TypeError(f"expected a torch.nn.Module, got {type(network).__name__}")
    for path, module in backbone_modules(network, backbone_attrs):
        if isinstance(module, _BatchNorm):
            yield path, module


def freeze_backbone_bn(model, backbone_attrs=DEFAULT_BACKBONE_ATTRS):
    """Put backbone BatchNorm in eval() with requires_grad=False; return how many were frozen."""
    # track_running_stats stays on: the pretrained running statistics keep being used.
    frozen = 0
    for _, module in backbone_batchnorms(model, backbone_attrs):
        module.eval()
        for param in (module.weight, module.bias):
            if param is not None:
                param.requires_grad_(False)
        frozen += 1
    if frozen == 0:
        # FrozenBatchNorm2d holds its statistics and affine as buffers: frozen already.
        network = unwrap_model(model)
        if not any(
            "running_mean" in dict(module.named_buffers(recurse=False))
            and not list(module.parameters(recurse=False))
            for _, module in backbone_modules(network, backbone_attrs)
        ):
            # Almost always a misconfiguration: the backbone attributes do not match the model.
            import warnings

            warnings.warn(
                f"freeze_backbone_bn: no BatchNorm found under the backbone attributes "
                f"{tuple(backbone_attrs)}; check the names of the attributes that hold "
                "the backbone",
                stacklevel=2,
            )
    return frozen


def keep_backbone_bn_eval(model, backbone_attrs=DEFAULT_BACKBONE_ATTRS):
    """Put backbone BatchNorm back in eval() after model.train(); return how many modules that was."""
    # model.train() switches every BatchNorm to training mode, undoing freeze_backbone_bn's eval().
    count = 0
    for _, module in backbone_batchnorms(model, backbone_attrs):
        module.eval()
        count += 1
    return count
