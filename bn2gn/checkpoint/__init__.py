"""Checkpoint work for remap-ckpt: safe loading, the pure remapping engine, verification, reports."""

from ..model.checkpoint_load import LoadOptions, find_state_dicts, load_checkpoint
from .job import RemapJob, RemapResult, default_output_path, run_remap
from .remap import CheckpointReport, RemapOptions, StateDictReport, remap_content, remap_state_dict
from .verification import Verification, verify_state_dict

__all__ = [
    "CheckpointReport",
    "LoadOptions",
    "RemapJob",
    "RemapOptions",
    "RemapResult",
    "StateDictReport",
    "Verification",
    "default_output_path",
    "find_state_dicts",
    "load_checkpoint",
    "remap_content",
    "remap_state_dict",
    "run_remap",
    "verify_state_dict",
]
