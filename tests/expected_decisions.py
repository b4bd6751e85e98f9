"""Hand-written expected decisions for every BatchNorm site in the fixtures.

Written by reading the fixture sources against the written rules of what is backbone (not
produced by bn2gn). Keys are ``(case, relative_file_path, scope, ordinal)``:

- ``case``: ``"centernet_mini"`` (``fixtures/centernet_mini``) or the name of
  the input of a tree golden (``fixtures/trees/<case>/in``); every case is scanned on its own.
- ``relative_file_path``: relative to the case directory, ``/`` separators.
- ``scope``: ``Class.method``; ``Class`` for class-body code; a function name
  for module-level functions (nested functions as ``outer.inner``);
  ``"<module>"`` for module-level code. A site in a default argument
  (``def __init__(self, c, norm_layer=nn.BatchNorm2d)``) belongs to that
  function's scope (``Class.__init__``), not to the class body.
- ``ordinal``: 0-based index of the site within that scope, in source order
  (order of the start position of the site expression).

A site is one of: a call of BatchNorm1d/2d/3d however it is spelled (``nn.``,
``torch.nn.``, ``from torch.nn import BatchNorm2d as BN``, a module-level
alias such as ``BatchNorm = nn.BatchNorm2d``); a ``partial(nn.BatchNorm2d,
...)`` call expression; a bare ``nn.BatchNorm2d`` reference passed as a
callable (default argument or keyword argument). Not sites: the alias
assignment itself, calls of a local/parameter bound to a partial or to
``norm_layer`` (``norm(16)``, ``norm_layer(cout)``), ``isinstance(m,
nn.BatchNorm2d)``, and BatchNorm2d inside comments, strings, f-string text
and docstrings.

Decisions: ``"convert"`` (becomes ``get_group_norm``), ``"keep"``,
``"unsure"`` (reported, never changed).
"""

CONVERT = "convert"
KEEP = "keep"
UNSURE = "unsure"

# Every rewrite tree golden (fixtures/trees/<case>/in), plus the mini repository.
CASES = (
    "centernet_mini",
    "crlf",
    "dynamic_backbone",
    "encodings",
    "has_helper",
    "import_styles",
    "init_loops",
    "inline_backbone",
    "no_backbone",
    "no_batchnorm",
    "shared_block",
    "strings_comments",
    "syntax_error",
    "two_space",
    "unreached",
)

# Files that cannot be parsed: they must be reported (file:line: reason),
# left byte-for-byte unchanged, and must not stop the other files. Their
# BatchNorm2d calls are not listed in EXPECTED. Value: the line of the
# offending construct.
UNPARSEABLE = {
    ("syntax_error", "py2_print.py"): 8,  # Python 2 print statement
    ("syntax_error", "not_utf8.py"): 8,  # latin-1 byte 0xEA, no PEP 263 cookie
}

EXPECTED = {}

# --- centernet_mini -------------------------------------------------------
# Config: none beyond the defaults (backbone, base_layer). PoseResNet's inline
# stages conv1, layer1..layer4 are backbone because init_weights loads the
# torchvision ResNet checkpoint (model_urls, 'resnet18-...') into the model.
#
# Roots: DLASeg (dladcn_gru.py) and PoseResNet (resnet_fpn_dcn.py); both are
# built only by module-level get_pose_net factories.
#
# dla.py: DLASeg builds its backbone with globals()[base_name](...), which
# cannot be followed, so nothing in dla.py is reached from a root: keep.
# DLA itself is not a root: it is the (unfollowable) target of that dynamic
# backbone lookup, reached only through the dla34 factory that dladcn_gru.py
# imports for it.
EXPECTED.update(
    {
        ("centernet_mini", "lib/models/dla.py", "BasicBlock.__init__", 0): KEEP,
        ("centernet_mini", "lib/models/dla.py", "BasicBlock.__init__", 1): KEEP,
        ("centernet_mini", "lib/models/dla.py", "Root.__init__", 0): KEEP,
        ("centernet_mini", "lib/models/dla.py", "Tree.__init__", 0): KEEP,
        ("centernet_mini", "lib/models/dla.py", "DLA.__init__", 0): KEEP,
        ("centernet_mini", "lib/models/dla.py", "DLA._make_level", 0): KEEP,
        ("centernet_mini", "lib/models/dla.py", "DLA._make_conv_level", 0): KEEP,
    }
)
# dladcn_gru.py: everything DLASeg builds outside self.backbone converts:
# DeformConv (through dla_up/ida_up via setattr, and _make_deconv_layer),
# MaskProp (mask_prop; PoseResNet's mask_prop too), DeConvGRUNet (gru;
# PoseResNet's gru too; proj0 16, proj_hm 16, motion 7, fuse 34), the heads
# set with self.__setattr__(head, fc), and the unused _make_deconv_layer
# (a method of the root outside the backbone assignment). Being reached
# from two roots' non-backbone parts is not "shared": still convert.
EXPECTED.update(
    {
        ("centernet_mini", "lib/models/dladcn_gru.py", "DeformConv.__init__", 0): CONVERT,
        ("centernet_mini", "lib/models/dladcn_gru.py", "MaskProp.__init__", 0): CONVERT,
        ("centernet_mini", "lib/models/dladcn_gru.py", "DeConvGRUNet.__init__", 0): CONVERT,
        ("centernet_mini", "lib/models/dladcn_gru.py", "DeConvGRUNet.__init__", 1): CONVERT,
        ("centernet_mini", "lib/models/dladcn_gru.py", "DeConvGRUNet.__init__", 2): CONVERT,
        ("centernet_mini", "lib/models/dladcn_gru.py", "DeConvGRUNet.__init__", 3): CONVERT,
        ("centernet_mini", "lib/models/dladcn_gru.py", "DLASeg.__init__", 0): CONVERT,
        ("centernet_mini", "lib/models/dladcn_gru.py", "DLASeg._make_deconv_layer", 0): CONVERT,
    }
)
# resnet.py: BasicBlock/Bottleneck reach PoseResNet through resnet_spec ->
# get_pose_net -> PoseResNet(block_class, ...) -> self.layer1..4 =
# self._make_layer(block, ...): backbone only, keep. (Bottleneck is unused by
# res_18, and the BN of its self-built downsample is unused by _make_layer;
# both keep either way.)
EXPECTED.update(
    {
        ("centernet_mini", "lib/models/resnet.py", "BasicBlock.__init__", 0): KEEP,
        ("centernet_mini", "lib/models/resnet.py", "BasicBlock.__init__", 1): KEEP,
        ("centernet_mini", "lib/models/resnet.py", "Bottleneck.__init__", 0): KEEP,
        ("centernet_mini", "lib/models/resnet.py", "Bottleneck.__init__", 1): KEEP,
        ("centernet_mini", "lib/models/resnet.py", "Bottleneck.__init__", 2): KEEP,
        ("centernet_mini", "lib/models/resnet.py", "Bottleneck.__init__", 3): KEEP,
    }
)
# resnet_fpn_dcn.py (2-space indentation): PoseResNet.__init__ has the
# base_layer stem BN first (backbone attribute: keep; never used in forward,
# so its statistics stay at their initial values) and then the head BN
# (convert). _make_layer is a helper reached only from layer1..4: keep.
# _make_deconv_layer (deconv_layers) and this file's own DeformConv, used by
# it: convert.
EXPECTED.update(
    {
        ("centernet_mini", "lib/models/resnet_fpn_dcn.py", "DeformConv.__init__", 0): CONVERT,
        ("centernet_mini", "lib/models/resnet_fpn_dcn.py", "PoseResNet.__init__", 0): KEEP,
        ("centernet_mini", "lib/models/resnet_fpn_dcn.py", "PoseResNet.__init__", 1): CONVERT,
        ("centernet_mini", "lib/models/resnet_fpn_dcn.py", "PoseResNet._make_layer", 0): KEEP,
        (
            "centernet_mini",
            "lib/models/resnet_fpn_dcn.py",
            "PoseResNet._make_deconv_layer",
            0,
        ): CONVERT,
    }
)

# --- import_styles --------------------------------------------------------
# One small root per file (self.backbone = XBackbone(), self.head = XHead());
# backbone sites keep, head sites convert, whatever the import style.
EXPECTED.update(
    {
        ("import_styles", "nn_alias.py", "NnAliasBackbone.__init__", 0): KEEP,
        ("import_styles", "nn_alias.py", "NnAliasHead.__init__", 0): CONVERT,
        ("import_styles", "torch_nn.py", "TorchNnBackbone.__init__", 0): KEEP,
        ("import_styles", "torch_nn.py", "TorchNnHead.__init__", 0): CONVERT,
        ("import_styles", "from_import_as.py", "FromImportBackbone.__init__", 0): KEEP,
        ("import_styles", "from_import_as.py", "FromImportHead.__init__", 0): CONVERT,
        ("import_styles", "from_torch_nn.py", "FromTorchBackbone.__init__", 0): KEEP,
        ("import_styles", "from_torch_nn.py", "FromTorchHead.__init__", 0): CONVERT,
    }
)
# alias.py: BatchNorm = nn.BatchNorm2d (module level, not a site) is called by
# the backbone (keep) and by the head (convert); the alias line stays.
EXPECTED.update(
    {
        ("import_styles", "alias.py", "AliasBackbone.__init__", 0): KEEP,
        ("import_styles", "alias.py", "AliasBackbone.__init__", 1): KEEP,
        ("import_styles", "alias.py", "AliasHead.__init__", 0): CONVERT,
        ("import_styles", "alias.py", "AliasHead.__init__", 1): CONVERT,
    }
)
# callables.py: partial(nn.BatchNorm2d, ...) and nn.BatchNorm2d passed as a
# callable are unsure in head code, keep in backbone-only code. Sites: the
# norm_layer default of BackboneBlock (backbone only: keep), the partial in
# CallablesBackbone (keep), the norm_layer default of HeadBlock (built only
# by the head: unsure), the functools.partial in CallablesHead (unsure) and
# the norm_layer=nn.BatchNorm2d keyword there (unsure).
EXPECTED.update(
    {
        ("import_styles", "callables.py", "BackboneBlock.__init__", 0): KEEP,
        ("import_styles", "callables.py", "CallablesBackbone.__init__", 0): KEEP,
        ("import_styles", "callables.py", "HeadBlock.__init__", 0): UNSURE,
        ("import_styles", "callables.py", "CallablesHead.__init__", 0): UNSURE,
        ("import_styles", "callables.py", "CallablesHead.__init__", 1): UNSURE,
    }
)
# arguments.py: positional/keyword argument variants; all head sites convert.
# Order in ArgsHead.__init__: positional(c, eps, momentum, affine),
# all-positional, eps=, affine=, momentum=, track_running_stats=,
# all keywords, multi-line with a comment, expression as num_features.
EXPECTED.update(
    {
        ("import_styles", "arguments.py", "ArgsBackbone.__init__", 0): KEEP,
    }
)
EXPECTED.update(
    {("import_styles", "arguments.py", "ArgsHead.__init__", i): CONVERT for i in range(9)}
)

# --- shared_block ---------------------------------------------------------
# ConvBNReLU is built by SharedBackbone (backbone) and by SharedNet.neck
# (head): unsure. BackboneOnlyBlock: keep; HeadOnlyBlock: convert.
# SharedBackbone's own BN: keep; SharedNet.out_bn (root, non-backbone):
# convert.
EXPECTED.update(
    {
        ("shared_block", "blocks.py", "ConvBNReLU.__init__", 0): UNSURE,
        ("shared_block", "blocks.py", "BackboneOnlyBlock.__init__", 0): KEEP,
        ("shared_block", "blocks.py", "HeadOnlyBlock.__init__", 0): CONVERT,
        ("shared_block", "model.py", "SharedBackbone.__init__", 0): KEEP,
        ("shared_block", "model.py", "SharedNet.__init__", 0): CONVERT,
    }
)

# --- dynamic_backbone -----------------------------------------------------
# globals()[base_name](...) and BACKBONES[name]() (filled by @register)
# cannot be followed: the backbone classes are reached by no root and keep.
# They build no other scanned class, so none of them is a root itself. The
# necks/heads built by the roots convert.
EXPECTED.update(
    {
        ("dynamic_backbone", "globals_net.py", "TinyResBackbone.__init__", 0): KEEP,
        ("dynamic_backbone", "globals_net.py", "TinyResBackbone._make_stage", 0): KEEP,
        ("dynamic_backbone", "globals_net.py", "NeckBlock.__init__", 0): CONVERT,
        ("dynamic_backbone", "globals_net.py", "GlobalsNet.__init__", 0): CONVERT,
        ("dynamic_backbone", "registry.py", "ResLite.__init__", 0): KEEP,
        ("dynamic_backbone", "registry.py", "ResLite.__init__", 1): KEEP,
        ("dynamic_backbone", "registry.py", "MobileLite.__init__", 0): KEEP,
        ("dynamic_backbone", "registry_net.py", "RegistryHead.__init__", 0): CONVERT,
    }
)

# --- inline_backbone ------------------------------------------------------
# pyproject.toml: backbone-attrs = conv1, bn1, layer1..layer4. PoseNet is the
# root (get_pose_net -> resnet_spec -> PoseNet(block_class, ...)); BasicBlock
# has conv1/bn1 too and builds SEGate, but it is built by PoseNet through the
# table, so it is not a root. PoseNet.__init__: self.bn1 (keep), then the
# head BN (convert). _make_layer (downsample) only from layer1..4: keep.
EXPECTED.update(
    {
        ("inline_backbone", "pose_net.py", "BasicBlock.__init__", 0): KEEP,
        ("inline_backbone", "pose_net.py", "BasicBlock.__init__", 1): KEEP,
        ("inline_backbone", "pose_net.py", "PoseNet.__init__", 0): KEEP,
        ("inline_backbone", "pose_net.py", "PoseNet.__init__", 1): CONVERT,
        ("inline_backbone", "pose_net.py", "PoseNet._make_layer", 0): KEEP,
        ("inline_backbone", "pose_net.py", "PoseNet._make_deconv_layer", 0): CONVERT,
    }
)

# --- no_backbone ----------------------------------------------------------
# PlainNet is a root (it builds PlainHead) with no backbone attribute at all
# (self.features, self.head): nothing is converted.
EXPECTED.update(
    {
        ("no_backbone", "model.py", "PlainHead.__init__", 0): KEEP,
        ("no_backbone", "model.py", "PlainNet.__init__", 0): KEEP,
    }
)

# --- strings_comments -----------------------------------------------------
# BatchNorm2d in the docstrings, comments, plain strings, triple-quoted
# strings and f-string text is no site. MixedHead: the real BatchNorm2d
# (convert), then BatchNorm3d and BatchNorm1d (listed, out of scope: keep).
EXPECTED.update(
    {
        ("strings_comments", "model.py", "QuietBackbone.__init__", 0): KEEP,
        ("strings_comments", "model.py", "MixedHead.__init__", 0): CONVERT,
        ("strings_comments", "model.py", "MixedHead.__init__", 1): KEEP,
        ("strings_comments", "model.py", "MixedHead.__init__", 2): KEEP,
    }
)

# --- unreached ------------------------------------------------------------
# UsedNet is the root. OldNeck, LegacyHead and make_legacy_block are built by
# nothing ("not referenced by a root model"): keep. They build no scanned
# class, so none of them is a root.
EXPECTED.update(
    {
        ("unreached", "model.py", "UsedBackbone.__init__", 0): KEEP,
        ("unreached", "model.py", "UsedHead.__init__", 0): CONVERT,
        ("unreached", "model.py", "OldNeck.__init__", 0): KEEP,
        ("unreached", "legacy.py", "LegacyHead.__init__", 0): KEEP,
        ("unreached", "legacy.py", "make_legacy_block", 0): KEEP,
    }
)

# --- two_space ------------------------------------------------------------
# 2-space indentation. Heads (set via __setattr__) and the neck built by the
# root's helper _make_neck convert; the backbone keeps.
EXPECTED.update(
    {
        ("two_space", "model.py", "TwoSpaceBackbone.__init__", 0): KEEP,
        ("two_space", "model.py", "TwoSpaceNet.__init__", 0): CONVERT,
        ("two_space", "model.py", "TwoSpaceNet._make_neck", 0): CONVERT,
    }
)

# --- crlf -----------------------------------------------------------------
# CRLF line endings everywhere; the head BN call spans two lines.
EXPECTED.update(
    {
        ("crlf", "model.py", "CrlfBackbone.__init__", 0): KEEP,
        ("crlf", "model.py", "CrlfHead.__init__", 0): CONVERT,
    }
)

# --- encodings ------------------------------------------------------------
# bom_utf8.py: UTF-8 with BOM and Chinese comments/strings;
# latin1_cookie.py: "# -*- coding: latin-1 -*-" with latin-1 bytes.
EXPECTED.update(
    {
        ("encodings", "bom_utf8.py", "BomBackbone.__init__", 0): KEEP,
        ("encodings", "bom_utf8.py", "BomHead.__init__", 0): CONVERT,
        ("encodings", "latin1_cookie.py", "Latin1Backbone.__init__", 0): KEEP,
        ("encodings", "latin1_cookie.py", "Latin1Head.__init__", 0): CONVERT,
    }
)

# --- no_batchnorm ---------------------------------------------------------
# GroupNorm/LayerNorm only: no sites, nothing changes.

# --- syntax_error ---------------------------------------------------------
# py2_print.py and not_utf8.py cannot be parsed (see UNPARSEABLE); model.py
# is valid and is still processed.
EXPECTED.update(
    {
        ("syntax_error", "model.py", "ValidBackbone.__init__", 0): KEEP,
        ("syntax_error", "model.py", "ValidHead.__init__", 0): CONVERT,
    }
)

# --- has_helper -----------------------------------------------------------
# own_helper.py defines get_group_norm, imports_helper.py imports it from
# norms.py (no sites): each still has one head BN to convert, and neither may
# get a second helper.
EXPECTED.update(
    {
        ("has_helper", "own_helper.py", "OwnBackbone.__init__", 0): KEEP,
        ("has_helper", "own_helper.py", "OwnHead.__init__", 0): CONVERT,
        ("has_helper", "imports_helper.py", "ImportsBackbone.__init__", 0): KEEP,
        ("has_helper", "imports_helper.py", "ImportsHead.__init__", 0): CONVERT,
    }
)

# --- init_loops -----------------------------------------------------------
# Head classes (neck/head/fuse of LoopNet) and LoopNet.cls convert; their
# init loops (constant_, fill_/zero_ in a separate init_weights method,
# elif after a Conv2d branch, and the module-level init_head_weights that
# walks self.cls) are rewritten. LoopBackbone keeps its BN and its loop.
EXPECTED.update(
    {
        ("init_loops", "model.py", "LoopBackbone.__init__", 0): KEEP,
        ("init_loops", "model.py", "ConstantHead.__init__", 0): CONVERT,
        ("init_loops", "model.py", "FillHead.__init__", 0): CONVERT,
        ("init_loops", "model.py", "ElifHead.__init__", 0): CONVERT,
        ("init_loops", "model.py", "LoopNet.__init__", 0): CONVERT,
    }
)


# --- GroupNorm group counts in the rewritten centernet_mini ---------------
# get_group_norm(C) uses min(32, C) groups, decreased until it divides C.
# Channel counts planted in the non-backbone layers -> expected groups.
EXPECTED_GROUPS = {16: 16, 48: 24, 100: 25, 7: 7, 34: 17, 32: 32}

# The models are built, from inside the (rewritten) fixtures/centernet_mini
# directory, with exactly:
#     from lib.models.model import create_model
#     model = create_model(arch, heads={'hm': 1, 'wh': 2, 'reg': 2},
#                          head_conv=48, frames=3)
# and run on input of shape (1, frames * 3, 32, 32) (frames stacked on the
# channel axis); outputs are [{'hm', 'wh', 'reg'}] at 8x8.
CREATE_MODEL_KWARGS = {"heads": {"hm": 1, "wh": 2, "reg": 2}, "head_conv": 48, "frames": 3}
INPUT_SHAPE = (1, 9, 32, 32)

# Every BatchNorm2d of the original model outside the backbone, by dotted
# module path -> (num_channels, expected GroupNorm groups after rewrite).
# After the rewrite each of these is a GroupNorm; nothing else changes type.
EXPECTED_GROUPNORM_MODULES = {
    "dla_34": {
        "dla_up.ida_0.proj_1.actf.0": (16, 16),
        "dla_up.ida_0.node_1.actf.0": (16, 16),
        "dla_up.ida_1.proj_1.actf.0": (16, 16),
        "dla_up.ida_1.node_1.actf.0": (16, 16),
        "dla_up.ida_2.proj_1.actf.0": (32, 32),
        "dla_up.ida_2.node_1.actf.0": (32, 32),
        "ida_up.proj_1.actf.0": (16, 16),
        "ida_up.node_1.actf.0": (16, 16),
        "ida_up.proj_2.actf.0": (16, 16),
        "ida_up.node_2.actf.0": (16, 16),
        "mask_prop.bn": (100, 25),
        "gru.proj0.1": (16, 16),
        "gru.proj_hm.1": (16, 16),
        "gru.motion.1": (7, 7),
        "gru.fuse.1": (34, 17),
        "hm.1": (48, 24),
        "wh.1": (48, 24),
        "reg.1": (48, 24),
    },
    "res_18": {
        "deconv_layers.0.actf.0": (32, 32),
        "deconv_layers.2": (32, 32),
        "deconv_layers.4.actf.0": (16, 16),
        "deconv_layers.6": (16, 16),
        "deconv_layers.8.actf.0": (16, 16),
        "deconv_layers.10": (16, 16),
        "mask_prop.bn": (100, 25),
        "gru.proj0.1": (16, 16),
        "gru.proj_hm.1": (16, 16),
        "gru.motion.1": (7, 7),
        "gru.fuse.1": (34, 17),
        "hm.1": (48, 24),
        "wh.1": (48, 24),
        "reg.1": (48, 24),
    },
}

# BatchNorm2d modules that must still be BatchNorm2d after the rewrite: all
# of them live under these attribute prefixes, and there are this many.
# (res_18: base_layer 1 + layer1 4 + layer2..4 5 each; dla_34: the whole
# DLA backbone.)
EXPECTED_BACKBONE_BATCHNORM = {
    "dla_34": {"prefixes": ("backbone.",), "count": 37},
    "res_18": {
        "prefixes": ("base_layer.", "layer1.", "layer2.", "layer3.", "layer4."),
        "count": 20,
    },
}


# === right plans with no options (fixtures/plans/<shape>) =========
# Each case is scanned from its own folder with no options and no config file:
# the backbone must come from pretrained-weight evidence, the roots from the
# entry points. Written by reading the fixtures.
PLAN_CASES = (
    "plans/dla_pretrained",
    "plans/flat_resnet",
    "plans/tracker",
    "plans/encoder_table",
    "plans/dla_alone",
)

# --- plans/dla_pretrained --------------------------------------------------
# Shapes: pretrained factory under an unlisted attribute (DLASeg.base =
# globals()[base_name](pretrained=pretrained)); factory table subscripted at
# run time (create_model -> _model_factory[arch]); heads by
# self.__setattr__(head, fc); dead DLA._make_level.
# dla.py is the backbone: Block, Stage, DLA (base_layer stem, _conv_level)
# keep, and the never-called _make_level is DLA's code: keep.
# pose_dla.py: DeformConv (inside DLAUp/IDAUp, neck) and the heads convert.
EXPECTED.update(
    {
        ("plans/dla_pretrained", "models/dla.py", "Block.__init__", 0): KEEP,
        ("plans/dla_pretrained", "models/dla.py", "Stage.__init__", 0): KEEP,
        ("plans/dla_pretrained", "models/dla.py", "DLA.__init__", 0): KEEP,
        ("plans/dla_pretrained", "models/dla.py", "DLA._make_level", 0): KEEP,
        ("plans/dla_pretrained", "models/dla.py", "DLA._conv_level", 0): KEEP,
        ("plans/dla_pretrained", "models/pose_dla.py", "DeformConv.__init__", 0): CONVERT,
        ("plans/dla_pretrained", "models/pose_dla.py", "DLASeg.__init__", 0): CONVERT,
    }
)

# --- plans/flat_resnet -----------------------------------------------------
# Shapes: flat ResNet (conv1/bn1/layer1..4 inline beside deconv_layers and
# heads) whose init_weights loads model_urls['resnet..'] (download.pytorch.org
# resnet URLs) with strict=False: conv1, bn1, layer1..4 are backbone, the stem
# too. self.adapt = DeformConv(64 * block.expansion, 32) passes no block, so
# BasicBlock/Bottleneck are reached only from layer1..4: keep. DeformConv in
# dcn.py builds NormAct through a local alias (norm = NormAct; norm(cho)): the
# alias is followed, NormAct is neck code: convert. Heads (__setattr__) and
# _make_deconv_layer convert; _make_layer's downsample keeps.
EXPECTED.update(
    {
        ("plans/flat_resnet", "nets/dcn.py", "NormAct.__init__", 0): CONVERT,
        ("plans/flat_resnet", "nets/msra_resnet.py", "BasicBlock.__init__", 0): KEEP,
        ("plans/flat_resnet", "nets/msra_resnet.py", "BasicBlock.__init__", 1): KEEP,
        ("plans/flat_resnet", "nets/msra_resnet.py", "Bottleneck.__init__", 0): KEEP,
        ("plans/flat_resnet", "nets/msra_resnet.py", "Bottleneck.__init__", 1): KEEP,
        ("plans/flat_resnet", "nets/msra_resnet.py", "PoseResNet.__init__", 0): KEEP,
        ("plans/flat_resnet", "nets/msra_resnet.py", "PoseResNet.__init__", 1): CONVERT,
        ("plans/flat_resnet", "nets/msra_resnet.py", "PoseResNet._make_layer", 0): KEEP,
        ("plans/flat_resnet", "nets/msra_resnet.py", "PoseResNet._make_deconv_layer", 0): CONVERT,
    }
)

# --- plans/tracker ---------------------------------------------------------
# Shapes: factory table of classes (_network_factory[arch]); heads built in a
# base class (BaseModel.__init__ through super().__init__ in DLASeg and
# BaseModel.__init__(self, ...) in PoseResDCN); same-named classes in two
# files (neck.py BasicBlock is neck code: convert; dla.py BasicBlock is the
# DLA's block: keep); new input branches inside the backbone class
# (DLA.pre_img_layer / pre_hm_layer: the DLA checkpoint DLA loads does not
# cover them: unsure); an unused backbone copy (dla_old.py: nothing builds
# OldDLA, so all its sites keep, "not used by any model"), and a flat ResNet
# (PoseResDCN) whose init_weights loads a torchvision ResNet URL through
# torch.hub's load_state_dict_from_url.
EXPECTED.update(
    {
        ("plans/tracker", "lib/model/networks/base_model.py", "BaseModel.__init__", 0): CONVERT,
        ("plans/tracker", "lib/model/networks/neck.py", "BasicBlock.__init__", 0): CONVERT,
        ("plans/tracker", "lib/model/networks/dla.py", "BasicBlock.__init__", 0): KEEP,
        ("plans/tracker", "lib/model/networks/dla.py", "DLA.__init__", 0): KEEP,
        ("plans/tracker", "lib/model/networks/dla.py", "DLA.__init__", 1): UNSURE,
        ("plans/tracker", "lib/model/networks/dla.py", "DLA.__init__", 2): UNSURE,
        ("plans/tracker", "lib/model/networks/resdcn.py", "Bottleneck.__init__", 0): KEEP,
        ("plans/tracker", "lib/model/networks/resdcn.py", "PoseResDCN.__init__", 0): KEEP,
        ("plans/tracker", "lib/model/networks/resdcn.py", "PoseResDCN.__init__", 1): CONVERT,
        ("plans/tracker", "lib/model/networks/dla_old.py", "OldBlock.__init__", 0): KEEP,
        ("plans/tracker", "lib/model/networks/dla_old.py", "OldDLA.__init__", 0): KEEP,
        ("plans/tracker", "lib/model/networks/dla_old.py", "OldDLA.__init__", 1): KEEP,
    }
)

# --- plans/encoder_table ---------------------------------------------------
# Shape: self.encoder = backbone_factory[opt.backbone](opt=opt), where every
# value of the module-level table is a factory that loads weights
# (torch.hub.load_state_dict_from_url): encoder is backbone although its name
# is not listed. TinyResNet/TinyMobile keep; Decoder and the hm head convert.
EXPECTED.update(
    {
        ("plans/encoder_table", "backbones.py", "TinyResNet.__init__", 0): KEEP,
        ("plans/encoder_table", "backbones.py", "TinyResNet.__init__", 1): KEEP,
        ("plans/encoder_table", "backbones.py", "TinyMobile.__init__", 0): KEEP,
        ("plans/encoder_table", "detector.py", "Decoder.__init__", 0): CONVERT,
        ("plans/encoder_table", "detector.py", "Detector.__init__", 0): CONVERT,
    }
)

# --- plans/dla_alone -------------------------------------------------------
# Shape: a backbone class whose stem is base_layer, used inside a root
# (DLASeg.base = dla34(pretrained=...)) and alone (_model_factory['cls'] =
# dla34, a classifier). Either way its BatchNorm is pretrained: keep; the
# detector's Head converts.
EXPECTED.update(
    {
        ("plans/dla_alone", "dla.py", "Level.__init__", 0): KEEP,
        ("plans/dla_alone", "dla.py", "DLA.__init__", 0): KEEP,
        ("plans/dla_alone", "seg.py", "Head.__init__", 0): CONVERT,
    }
)
