"""params.yaml loads strictly: unknown keys, wrong types and bad values name the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from stages.params import Params, ParamsError, load_params, params_hash, parse_params


def test_shipped_params_are_valid(root):
    params = load_params(root / "params.yaml")
    assert params.data.resolution == 64
    assert params.download.source == "embedded"


def test_sections_are_frozen():
    params = parse_params({})
    with pytest.raises(Exception):
        params.data.resolution = 128  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"data": {"resolutoin": 64}}, "data.resolutoin: unknown key; allowed here: on_corrupt, resolution, shard_size"),
        ({"data": {"resolution": "64"}}, "data.resolution: must be a valid integer, got '64'"),
        ({"data": {"resolution": 60}}, "data.resolution: must be a multiple of 8"),
        ({"data": {"resolution": 8}}, "data.resolution: must be greater than or equal to 16, got 8"),
        ({"download": {"source": "web"}}, "download.source: must be one of 'embedded', 'folder' or 'manifest', got 'web'"),
        ({"download": {"embedded": {"val_fraction": 0.7}}}, "download.embedded.val_fraction: must be less than 0.5, got 0.7"),
        ({"download": {"manifest": {"timeout_s": "1e-4"}}}, "download.manifest.timeout_s: must be a valid number, got '1e-4'"),
        ({"nonsense": {}}, "nonsense: unknown key; allowed here: autoencoder, cache_latents, cluster, data, degrade, download"),
    ],
)
def test_errors_name_key_value_and_allowed(raw, expected):
    with pytest.raises(ParamsError) as info:
        parse_params(raw, "params.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("params.yaml: ")


def test_every_problem_is_listed_at_once():
    with pytest.raises(ParamsError) as info:
        parse_params({"data": {"resolution": 3, "shard_size": 0}})
    assert len(str(info.value).splitlines()) == 2


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="no such file"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="must be a mapping"):
        load_params(listed)


def test_params_hash_tracks_values():
    base = parse_params({})
    changed = parse_params({"download": {"seed": 1}})
    assert params_hash(base.data) == params_hash(changed.data)
    assert params_hash(base.download) != params_hash(changed.download)


def test_defaults_match_the_shipped_file(root):
    """params.yaml spells out every default, so what a user reads is what runs."""
    shipped = yaml.safe_load((root / "params.yaml").read_text())
    assert Params().model_dump() == parse_params(shipped).model_dump()


def test_cli_check_reports_without_traceback(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("data:\n  resolution: 65\n")
    result = subprocess.run([sys.executable, "-m", "flows.cli", "params", "check", "--params", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "data.resolution: must be a multiple of 8" in result.stderr
    assert "Traceback" not in result.stderr
    good = subprocess.run([sys.executable, "-m", "flows.cli", "params", "check", "--params", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert good.returncode == 2 and "no such file" in good.stderr
