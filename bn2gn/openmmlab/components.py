"""What bn2gn knows about the classes these configs build (read from the sources; docs/commands/config.md).

mmdet 3.3.0 (ResNet, ResNeXt, RegNet, SwinTransformer, FPN), mmdet3d 1.4.0 (SECOND, SECONDFPN,
SparseEncoder, CenterHead, HardSimpleVFE) and CMT's VoVNet / CPFPN / CmtHead as documented for
this project (the CMT repository itself is not shipped; its entries say what is not known).
``accepts`` is every keyword ``__init__`` takes (``type`` aside); ``None`` means "not known", and
then only ``rejects`` is checked. The stage names are what ``frozen_stages`` walks.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, FrozenSet, Optional, Tuple

#: when a class's freezing runs: at construction, in train(), or in init_weights()
INIT, TRAIN, INIT_WEIGHTS = "__init__", "train()", "init_weights()"


@dataclasses.dataclass(frozen=True)
class ComponentClass:
    name: str
    package: str
    source: str
    role: str  # backbone | neck | head | encoder
    accepts: Optional[FrozenSet[str]]
    rejects: FrozenSet[str] = frozenset()
    #: ``norm_cfg`` default as written in the signature; None when the class has no norm_cfg
    norm_default: Optional[dict] = None
    #: where BatchNorm is hard-coded in source, not settable from the config
    hard_coded_bn: Tuple[str, ...] = ()
    norm_eval_default: Optional[bool] = None  # None: the class has no norm_eval
    stem: Optional[str] = None
    stages: Callable[[dict], Tuple[str, ...]] = lambda cfg: ()
    freeze_runs: Tuple[str, ...] = ()
    #: direct children (module attribute names) and every name segment seen below them
    children: Tuple[str, ...] = ()
    segments: FrozenSet[str] = frozenset()
    #: children whose insides are built from the config (not known statically)
    opaque: Tuple[str, ...] = ()
    #: channel counts of the norm layers ``norm_cfg`` builds, from the config
    norm_channels: Callable[[dict], Tuple[int, ...]] = lambda cfg: ()
    #: "named": build_norm_layer names the layer (bn -> gn); "indexed": stored by index, names kept
    norm_naming: str = "named"
    #: for --gn: where norm layers of this class live (module path patterns, for the rename report)
    norm_layers: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()
    has_parameters: bool = True
    #: GroupNorm can be set through norm_cfg (False for sparse BatchNorm1d)
    gn_from_config: bool = True
    #: keys outside ``accepts``: "reject" (TypeError), "ignore" (**kwargs swallowed), "unknown";
    #: empty means "reject" when ``accepts`` is known, else "unknown"
    extra_keys: str = ""
    #: where ``**kwargs`` end up doing nothing (for the "accepted and ignored" finding)
    ignored_by: str = ""
    #: children a subclass set to None after super().__init__(): name -> file:line
    removed: Tuple[Tuple[str, str], ...] = ()
    #: methods defined along the class chain (a custom key naming one matches no parameter)
    methods: Tuple[str, ...] = ()
    #: where each fact comes from: (fact, "file:line" or "bn2gn's table")
    facts: Tuple[Tuple[str, str], ...] = ()

    @property
    def extra(self) -> str:
        return self.extra_keys or ("unknown" if self.accepts is None else "reject")

    @property
    def has_norm_eval(self) -> bool:
        return self.norm_eval_default is not None

    def stage_count(self, cfg: dict) -> int:
        return len(self.stages(cfg))


def _resnet_stages(cfg: dict) -> Tuple[str, ...]:
    count = cfg.get("num_stages", 4)
    return tuple(f"layer{i}" for i in range(1, int(count) + 1)) if isinstance(count, int) else ()


def _regnet_stages(cfg: dict) -> Tuple[str, ...]:
    return ("layer1", "layer2", "layer3", "layer4")


def _swin_stages(cfg: dict) -> Tuple[str, ...]:
    depths = cfg.get("depths", (2, 2, 6, 2))
    return (
        tuple(f"stages.{i}" for i in range(len(depths)))
        if isinstance(depths, (list, tuple))
        else ()
    )


def _as_ints(value) -> Tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return tuple(value)
    return ()


_RESNET_KEYS = frozenset(
    """depth in_channels stem_channels base_channels num_stages strides dilations out_indices
    style deep_stem avg_down frozen_stages conv_cfg norm_cfg norm_eval dcn stage_with_dcn plugins with_cp
    zero_init_residual pretrained init_cfg""".split()
)
_RESNET_SEGMENTS = frozenset(
    """conv1 bn1 stem layer1 layer2 layer3 layer4 conv2 conv3 bn2 bn3 downsample
    weight bias""".split()
)
_BN = {"type": "BN", "requires_grad": True}

RESNET = ComponentClass(
    name="ResNet",
    package="mmdet 3.3.0",
    source="mmdet/models/backbones/resnet.py",
    role="backbone",
    accepts=_RESNET_KEYS,
    norm_default=_BN,
    norm_eval_default=True,
    stem="stem (conv1 + bn1)",
    stages=_resnet_stages,
    freeze_runs=(INIT, TRAIN),
    children=("conv1", "bn1", "stem", "layer1", "layer2", "layer3", "layer4"),
    segments=_RESNET_SEGMENTS,
    notes=(
        "norm_eval=True puts every BatchNorm in eval after train(); it never changes requires_grad",
        "frozen stages are also put in eval by train(), whatever norm_eval says",
    ),
)
RESNEXT = dataclasses.replace(
    RESNET,
    name="ResNeXt",
    source="mmdet/models/backbones/resnext.py",
    accepts=_RESNET_KEYS | {"groups", "base_width"},
)
REGNET = dataclasses.replace(
    RESNET,
    name="RegNet",
    source="mmdet/models/backbones/regnet.py",
    stages=_regnet_stages,
    accepts=(_RESNET_KEYS - {"depth", "num_stages"}) | {"arch"},
)
SWIN = ComponentClass(
    name="SwinTransformer",
    package="mmdet 3.3.0",
    source="mmdet/models/backbones/swin.py",
    role="backbone",
    accepts=frozenset(
        """pretrain_img_size in_channels embed_dims patch_size window_size mlp_ratio depths num_heads
        strides out_indices qkv_bias qk_scale patch_norm drop_rate attn_drop_rate drop_path_rate
        use_abs_pos_embed act_cfg norm_cfg with_cp pretrained convert_weights frozen_stages init_cfg""".split()
    ),
    norm_default={"type": "LN"},
    stem="patch_embed",
    stages=_swin_stages,
    freeze_runs=(TRAIN,),
    children=(
        "patch_embed",
        "stages",
        "norm0",
        "norm1",
        "norm2",
        "norm3",
        "absolute_pos_embed",
        "drop_after_pos",
    ),
    segments=frozenset(
        "patch_embed stages blocks attn w_msa relative_position_bias_table ffn norm norm0 norm1 "
        "norm2 norm3 downsample absolute_pos_embed weight bias".split()
    ),
    notes=("LayerNorm only: no BatchNorm, no norm_eval",),
)
FPN = ComponentClass(
    name="FPN",
    package="mmdet 3.3.0",
    source="mmdet/models/necks/fpn.py",
    role="neck",
    accepts=frozenset(
        """in_channels out_channels num_outs start_level end_level add_extra_convs
        relu_before_extra_convs no_norm_on_lateral conv_cfg norm_cfg act_cfg upsample_cfg init_cfg""".split()
    ),
    children=("lateral_convs", "fpn_convs"),
    segments=frozenset("lateral_convs fpn_convs conv bn gn weight bias".split()),
    norm_channels=lambda cfg: _as_ints(cfg.get("out_channels")),
    norm_layers=("lateral_convs.{i}.{norm}", "fpn_convs.{i}.{norm}"),
    notes=("norm_cfg=None by default: no norm layer at all",),
)
CPFPN = dataclasses.replace(
    FPN,
    name="CPFPN",
    package="CMT",
    source="projects/mmdet3d_plugin/models/necks/cp_fpn.py",
    accepts=None,
    rejects=frozenset({"norm_eval"}),
    notes=(
        "an FPN variant; norm_cfg=None by default, so it has no norm layer; no norm_eval",
        "keys other than norm_eval are not checked (the CMT source is not available to bn2gn)",
    ),
)
SECOND = ComponentClass(
    name="SECOND",
    package="mmdet3d 1.4.0 / 1.0.0rc5",
    source="mmdet3d/models/backbones/second.py",
    role="backbone",
    accepts=frozenset(
        "in_channels out_channels layer_nums layer_strides norm_cfg conv_cfg init_cfg pretrained".split()
    ),
    norm_default={"type": "BN", "eps": 1e-3, "momentum": 0.01},
    children=("blocks",),
    segments=frozenset("blocks weight bias".split()),
    norm_channels=lambda cfg: _as_ints(cfg.get("out_channels", [128, 128, 256])),
    norm_naming="indexed",
    notes=(
        "no frozen_stages, no norm_eval, no **kwargs: passing either is a TypeError at build",
        "layers are stored by index (blocks.0.1): a GN conversion keeps every checkpoint name",
    ),
)
SECONDFPN = ComponentClass(
    name="SECONDFPN",
    package="mmdet3d 1.4.0 / 1.0.0rc5",
    source="mmdet3d/models/necks/second_fpn.py",
    role="neck",
    accepts=frozenset(
        """in_channels out_channels upsample_strides norm_cfg upsample_cfg conv_cfg
        use_conv_for_no_stride init_cfg""".split()
    ),
    norm_default={"type": "BN", "eps": 1e-3, "momentum": 0.01},
    children=("deblocks",),
    segments=frozenset("deblocks weight bias".split()),
    norm_channels=lambda cfg: _as_ints(cfg.get("out_channels", [256, 256, 256])),
    norm_naming="indexed",
    notes=(
        "no norm_eval",
        "layers are stored by index (deblocks.0.1): names survive a GN conversion",
    ),
)
SPARSE_ENCODER = ComponentClass(
    name="SparseEncoder",
    package="mmdet3d 1.4.0",
    source="mmdet3d/models/middle_encoders/sparse_encoder.py",
    role="encoder",
    accepts=frozenset(
        """in_channels sparse_shape order norm_cfg base_channels output_channels encoder_channels
        encoder_paddings block_type return_middle_feats""".split()
    ),
    norm_default={"type": "BN1d", "eps": 1e-3, "momentum": 0.01},
    children=("conv_input", "encoder_layers", "conv_out"),
    segments=frozenset(
        "conv_input encoder_layers encoder_layer1 encoder_layer2 encoder_layer3 encoder_layer4 "
        "conv_out weight bias".split()
    ),
    gn_from_config=False,
    notes=(
        "BatchNorm1d on sparse features; no frozen_stages, no norm_eval; needs spconv to build",
    ),
)
#: mmdet3d 1.0.0rc5 (the mmcv 1.x generation): the same class before return_middle_feats arrived
SPARSE_ENCODER_RC5 = dataclasses.replace(
    SPARSE_ENCODER,
    package="mmdet3d 1.0.0rc5",
    accepts=SPARSE_ENCODER.accepts - {"return_middle_feats"},
    notes=SPARSE_ENCODER.notes + ("no return_middle_feats before mmdet3d 1.1",),
)
HARD_SIMPLE_VFE = ComponentClass(
    name="HardSimpleVFE",
    package="mmdet3d 1.4.0",
    source="mmdet3d/models/voxel_encoders/voxel_encoder.py",
    role="encoder",
    accepts=frozenset({"num_features"}),
    has_parameters=False,
    notes=("no parameters: an lr_mult on it does nothing",),
)
CENTER_HEAD = ComponentClass(
    name="CenterHead",
    package="mmdet3d 1.4.0",
    source="mmdet3d/models/dense_heads/centerpoint_head.py",
    role="head",
    accepts=frozenset(
        """in_channels tasks bbox_coder common_heads loss_cls loss_bbox separate_head
        share_conv_channel num_heatmap_convs conv_cfg norm_cfg bias norm_bbox train_cfg test_cfg init_cfg""".split()
    ),
    norm_default={"type": "BN2d"},
    children=("shared_conv", "task_heads", "loss_cls", "loss_bbox"),
    segments=frozenset(
        "shared_conv task_heads conv bn weight bias heatmap reg height dim rot vel".split()
    ),
    norm_channels=lambda cfg: _as_ints(cfg.get("share_conv_channel", 64)),
    norm_layers=("shared_conv.{norm}",),
    notes=(
        "**kwargs go to BaseModule, which takes none: unknown keys are still a TypeError",
        "norm_cfg reaches shared_conv only; SeparateHead keeps its own norm_cfg (BN2d) unless "
        "separate_head=dict(norm_cfg=...) is set",
    ),
)
VOVNET = ComponentClass(
    name="VoVNet",
    package="CMT",
    source="projects/mmdet3d_plugin/models/backbones/vovnet.py",
    role="backbone",
    accepts=frozenset(
        "spec_name input_ch out_features frozen_stages norm_eval pretrained init_cfg".split()
    ),
    hard_coded_bn=("every conv block",),
    norm_eval_default=True,
    stem="stem",
    stages=lambda cfg: ("stage2", "stage3", "stage4", "stage5"),
    freeze_runs=(INIT_WEIGHTS,),
    children=("stem", "stage2", "stage3", "stage4", "stage5"),
    segments=frozenset("stem stage2 stage3 stage4 stage5 weight bias".split()),
    notes=(
        "BatchNorm is hard-coded (no norm_cfg)",
        "freezing runs only inside init_weights(): with norm_eval=False every BatchNorm trains after "
        "train(), frozen stages included",
    ),
)
CMT_HEAD = ComponentClass(
    name="CmtHead",
    package="CMT",
    source="projects/mmdet3d_plugin/models/dense_heads/cmt_head.py",
    role="head",
    accepts=None,
    hard_coded_bn=("shared_conv",),
    children=(
        "shared_conv",
        "reference_points",
        "bev_embedding",
        "rv_embedding",
        "transformer",
        "task_heads",
    ),
    segments=frozenset(
        "shared_conv reference_points bev_embedding rv_embedding transformer task_heads "
        "weight bias".split()
    ),
    opaque=("transformer",),
    notes=(
        "shared_conv hard-codes BatchNorm: only a source rewrite changes it",
        "accepted keys are not checked (the CMT source is not available to bn2gn)",
    ),
)

TABLE: Dict[str, ComponentClass] = {
    c.name: c
    for c in (
        RESNET,
        RESNEXT,
        REGNET,
        SWIN,
        FPN,
        CPFPN,
        SECOND,
        SECONDFPN,
        SPARSE_ENCODER,
        HARD_SIMPLE_VFE,
        CENTER_HEAD,
        VOVNET,
        CMT_HEAD,
    )
}
#: registry aliases (scope prefixes are stripped before lookup)
ALIASES = {"ResNetV1d": "ResNet", "ResNetV1c": "ResNet", "mmdet.ResNet": "ResNet"}
#: entries that differ by version: name -> (package, first version of TABLE's entry, older entry)
OLDER: Dict[str, Tuple[str, Tuple[int, ...], ComponentClass]] = {
    "SparseEncoder": ("mmdet3d", (1, 1), SPARSE_ENCODER_RC5),
}


def known_class(
    type_name: object, versions: Optional[Dict[str, Tuple[int, ...]]] = None
) -> Optional[ComponentClass]:
    """The table's entry; with ``versions`` (package -> release), the one for that version."""
    if not isinstance(type_name, str):
        return None
    name = type_name.rpartition(".")[2]
    entry = TABLE.get(ALIASES.get(name, name))
    older = OLDER.get(entry.name) if entry is not None else None
    if older is not None and versions and older[0] in versions and versions[older[0]] < older[1]:
        return older[2]
    return entry


def frozen_stages_meaning(cls: ComponentClass, cfg: dict, value: int) -> str:
    """``frozen_stages`` in words: "stem + layer1..3; layer4 trainable"."""
    stages = cls.stages(cfg)
    if not stages:
        return "the class has no frozen_stages"
    stem = (cls.stem or "stem").split(" ")[0]
    if value < 0:
        return "nothing frozen"
    if value > len(stages):
        return f"out of range (-1..{len(stages)})"
    frozen = stages[:value]
    rest = stages[value:]
    text = stem if not frozen else f"{stem} + {_span(frozen)}"
    return f"{text}; {_span(rest)} trainable" if rest else f"{text}: everything"


def _span(names: Tuple[str, ...]) -> str:
    if len(names) == 1:
        return names[0]
    first, last = names[0], names[-1]
    prefix = first.rstrip("0123456789")
    if last.startswith(prefix):
        return f"{first}..{last[len(prefix) :]}"
    return f"{first}..{last}"


def gn_groups(channels: int, limit: int = 32) -> int:
    """The largest divisor of ``channels`` not above ``limit`` (GroupNorm needs C % groups == 0)."""
    return max(g for g in range(1, min(limit, channels) + 1) if channels % g == 0)
