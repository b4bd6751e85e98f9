"""Configuration: whole-component backbone matching, config discovery, CLI over config."""

from __future__ import annotations

import pytest

from bn2gn.core.errors import Bn2gnError
from bn2gn.core.settings import DEFAULT_BACKBONE_NAMES, load_config
from bn2gn.decide.backbone import Backbone


@pytest.mark.parametrize(
    "path, expected",
    [
        ("base.0.bn", True),
        ("base3d.0.bn", False),
        ("base_layer.1", False),
        ("database.bn", False),
        ("head.base", True),
        ("rebase.bn", False),
    ],
)
def test_backbone_name_matches_whole_components_only(path, expected):
    assert Backbone.named(["base"]).contains(path) is expected


def test_defaults_are_the_specified_names():
    assert DEFAULT_BACKBONE_NAMES == ("backbone", "base_layer")


def test_nearest_pyproject_is_used_and_cli_overrides(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.bn2gn]\nbackbone-attrs = ["layer1"]\nroots = ["Net"]\n'
    )
    pkg = tmp_path / "lib" / "models"
    pkg.mkdir(parents=True)
    config = load_config([pkg])
    assert config.backbone_names == ("backbone", "base_layer", "layer1")
    assert config.roots == ("Net",)
    config = load_config([pkg], backbone_names=("stem",))
    assert config.backbone_names == ("backbone", "base_layer", "stem")


def test_bn2gn_toml_wins_over_pyproject_in_same_folder(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.bn2gn]\nbackbone-attrs = ["a"]\n')
    (tmp_path / "bn2gn.toml").write_text('[tool.bn2gn]\nbackbone-attrs = ["b"]\n')
    assert load_config([tmp_path]).backbone_names[-1] == "b"


def test_pyproject_without_table_is_skipped(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert (
        load_config([tmp_path]).source is None
        or load_config([tmp_path]).source != tmp_path / "pyproject.toml"
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[tool.bn2gn]\nbackbone-attrs = 3\n", "list of strings"),
        # a string is not a list (the README says exit 2), and a non-table is no crash
        (
            '[tool.bn2gn]\nbackbone-attrs = "head"\n',
            'backbone-attrs must be a list of strings, not a string (e.g. backbone-attrs = ["head"])',
        ),
        ('[tool.bn2gn]\nroots = "Net"\n', "roots must be a list of strings, not a string"),
        ('[tool.bn2gn]\nconvert = "Head"\n', "convert must be a list of strings, not a string"),
        (
            '[tool.bn2gn]\nkeep = ["A", 1]\n',
            "keep must be a list of strings, not a list with non-string items",
        ),
        ("[tool]\nbn2gn = 5\n", "[tool] bn2gn must be a table"),
        ('tool = "x"\n', "'tool' must be a table, not a string"),
        ('[tool.bn2gn]\nunknown = ["x"]\n', "unknown"),
        ("[tool.bn2gn\n", "cannot read"),
    ],
)
def test_bad_config_is_a_usage_error(tmp_path, text, fragment):
    (tmp_path / "bn2gn.toml").write_text(text)
    with pytest.raises(Bn2gnError) as info:
        load_config([tmp_path])
    assert fragment in str(info.value) and info.value.code == 2


def test_backbone_attr_must_be_identifier(tmp_path):
    with pytest.raises(Bn2gnError):
        load_config([tmp_path], backbone_names=("not-a-name",))


def test_tool_bn2gn_given_as_a_value_in_pyproject_is_found_and_refused(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool]\nbn2gn = 5\n")
    with pytest.raises(Bn2gnError, match=r"\[tool\] bn2gn must be a table") as info:
        load_config([tmp_path])
    assert info.value.code == 2


def test_dotted_tool_bn2gn_keys_in_pyproject_are_read(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool]\nbn2gn.backbone-attrs = ["trunk"]\n')
    assert "trunk" in load_config([tmp_path]).backbone_names


def test_runtime_defaults_are_the_settings_defaults():
    """bn2gn.runtime imports nothing of bn2gn (training code imports it), so it keeps its own copy."""
    from bn2gn import runtime

    assert runtime.DEFAULT_BACKBONE_ATTRS == DEFAULT_BACKBONE_NAMES
