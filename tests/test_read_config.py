"""fmhub.manifest.read_config: a plugin's folder file read into a pydantic model; every problem is
a ManifestError naming the file and, for a bad value, the field."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, RootModel

import fmhub
from fmhub.manifest import read_config


class Inner(BaseModel):
    factory: str


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: int
    inner: Inner


class Entries(RootModel[list[Inner]]):
    pass


def _write(tmp_path, data, name="cfg.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_valid_file_is_the_model(tmp_path):
    cfg = read_config(_write(tmp_path, {"rate": 16000, "inner": {"factory": "f"}}), Config)
    assert cfg == Config(rate=16000, inner=Inner(factory="f"))
    assert read_config(_write(tmp_path, [{"factory": "a"}]), Entries).root == [Inner(factory="a")]


@pytest.mark.parametrize(
    "data,match",
    [
        (
            {"rate": "fast", "inner": {"factory": "f"}},
            r"field 'rate': Input should be a valid integer",
        ),
        ({"rate": 1}, r"field 'inner': Field required"),
        ({"rate": 1, "inner": {}}, r"field 'inner\.factory': Field required"),
        ({"rate": 1, "inner": {"factory": "f"}, "extra": 1}, r"field 'extra': Extra inputs"),
        ("{not json", r"not JSON"),
        ([1, 2], r"a JSON list, not an object"),
        ("[" * 100 + "]" * 100, r"nested 100 levels deep"),
    ],
)
def test_a_bad_file_is_a_manifest_error_naming_file_and_field(tmp_path, data, match):
    path = _write(tmp_path, data)
    with pytest.raises(fmhub.ManifestError, match=match) as info:
        read_config(path, Config)
    assert str(path) in str(info.value)


def test_a_missing_or_oversized_file_is_a_manifest_error(tmp_path):
    with pytest.raises(fmhub.ManifestError, match=r"missing\.json' is missing"):
        read_config(tmp_path / "missing.json", Config)
    path = _write(tmp_path, {"rate": 1, "inner": {"factory": "x" * 100}})
    with pytest.raises(fmhub.ManifestError, match=r"refusing a config over 64"):
        read_config(path, Config, max_bytes=64)
