"""Names: ids, aliases, open namespaces, local folders, unknown names and conflicts, listing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import fmhub
from fmhub import hookimpl

X = [0.5, -1.0, 2.0, 0.25]


def test_id_and_alias_resolve_to_the_same_spec(toy_hub):
    by_id, by_alias = fmhub.model_info("toy:embed"), fmhub.model_info("toy-embed")
    assert by_id == by_alias
    assert (by_id.id, by_id.plugin, by_id.task, by_id.namespace, by_id.name) == (
        "toy:embed",
        "toy",
        "embedding",
        "toy",
        "embed",
    )
    assert by_id.license == "MIT" and by_id.source


def test_unknown_name_suggests_close_matches_and_how_to_list(toy_hub):
    with pytest.raises(fmhub.UnknownModelError) as err:
        fmhub.load("toy:embd")
    msg = str(err.value)
    assert "Unknown model 'toy:embd'" in msg and "Did you mean 'toy:embed'" in msg
    assert "fmhub list toy:*" in msg
    with pytest.raises(fmhub.UnknownModelError, match=r"Did you mean 'toy-embed'.*fmhub list"):
        fmhub.model_info("toy-embd")
    with pytest.raises(KeyError):  # stays catchable as the builtin
        fmhub.model_info("nothing-like-it")


def test_unserved_namespace_names_the_distribution_to_install(toy_hub):
    with pytest.raises(fmhub.UnknownNamespaceError) as err:
        fmhub.model_info("timm:resnet18")
    assert "install fmhub-timm" in str(err.value) and "Served namespaces: toy:" in str(err.value)
    with pytest.raises(fmhub.UnknownNamespaceError, match="install fmhub-transformers"):
        fmhub.load("hf:google-bert/bert-base-uncased")
    with pytest.raises(fmhub.UnknownNamespaceError, match="install fmhub-acme"):
        fmhub.model_info("acme:rocket")


@pytest.mark.parametrize("bad", ["", None, 3])
def test_name_must_be_a_non_empty_string(toy_hub, bad):
    with pytest.raises(fmhub.UnknownModelError, match="non-empty string"):
        fmhub.model_info(bad)


def test_open_namespace_is_resolved_by_its_owner_plugin(bare_hub, family):
    fam = family(ns="hubby", open=True)
    bare_hub.register(fam, name="hubby-plugin")  # plugin name differs from the namespace
    spec = bare_hub.model_info("hubby:any-org/any-repo")
    assert spec.id == "hubby:any-org/any-repo" and spec.plugin == "hubby-plugin"
    assert fam.calls[-1] == ("resolve_model", "hubby:any-org/any-repo", None)
    with pytest.raises(fmhub.UnknownModelError, match="Unknown model 'hubby:nope'"):
        bare_hub.model_info("hubby:nope")


def test_closed_namespace_does_not_ask_its_plugin(bare_hub, family):
    fam = family(ns="shut", open=False)
    bare_hub.register(fam, name="shut")
    with pytest.raises(fmhub.UnknownModelError, match="Did you mean 'shut:lin'"):
        bare_hub.model_info("shut:lim")
    assert fam.calls == []


def test_folder_saved_by_fmhub_loads_back(toy_hub, tmp_path):
    model = fmhub.load("toy:classify", seed=3)
    folder = model.save(tmp_path / "clf")
    spec = fmhub.model_info(str(folder))
    assert spec.path == str(folder) and spec.plugin == "toy" and spec.options == {"seed": 3}
    again = fmhub.load(folder)  # a Path works too
    assert again.task == "classification" and again.labels == model.labels
    assert again(X) == model(X)


def test_folder_in_a_family_format_is_claimed_by_its_plugin(toy_hub, tmp_path):
    model = fmhub.load("toy:embed")
    folder = model.save(tmp_path / "native")
    (folder / "fmhub.json").unlink()  # now only the toy family's own files
    spec = fmhub.model_info(str(folder))
    assert spec.id == "toy:local" and spec.path == str(folder) and spec.plugin == "toy"
    np.testing.assert_array_equal(fmhub.load(str(folder))(X), model(X))
    assert fmhub.model_info(f"toy:{folder}").id == "toy:local"  # explicit namespace prefix


def test_folder_nobody_claims_is_a_clear_error(toy_hub, tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(
        fmhub.UnknownModelError, match=r"No installed plugin recognises .*fmhub.json"
    ):
        fmhub.model_info(str(tmp_path))
    with pytest.raises(fmhub.UnknownModelError, match="does not recognise"):
        fmhub.model_info(f"toy:{tmp_path}")


def test_folder_claimed_by_two_plugins_asks_for_a_prefix(toy_hub, tmp_path, family):
    toy_hub.register(family(ns="fam", claim="toy.json"), name="fam-plugin")
    folder = fmhub.load("toy:embed").save(tmp_path / "m")
    (folder / "fmhub.json").unlink()
    with pytest.raises(fmhub.AmbiguousModelError) as err:
        fmhub.model_info(str(folder))
    msg = str(err.value)
    assert "plugin 'toy'" in msg and "plugin 'fam-plugin'" in msg and "prefix it" in msg
    assert fmhub.model_info(f"fam:{folder}").plugin == "fam-plugin"
    assert fmhub.model_info(f"toy:{folder}").plugin == "toy"


def test_name_resolution_order_id_alias_namespace_then_path(toy_hub, tmp_path, monkeypatch):
    folder = fmhub.load("toy:embed").save(tmp_path / "toy-classifier")
    monkeypatch.chdir(tmp_path)
    assert fmhub.model_info("toy-classifier").id == "toy:classify"  # the alias wins
    assert fmhub.model_info("./toy-classifier").path == str(folder)  # a path is a path
    shutil.rmtree(folder)


def test_two_plugins_claiming_one_id_name_both_and_how_to_choose(bare_hub, family):
    bare_hub.register(family(ns="fam"), name="fam-a")

    class Again:
        @hookimpl
        def fmhub_register_models(self, register):
            register(fmhub.ModelSpec(id="fam:lin", task="embedding"))

    bare_hub.register(Again(), name="fam-b")
    with pytest.raises(fmhub.AmbiguousModelError) as err:
        bare_hub.model_info("fam:lin")
    msg = str(err.value)
    assert "plugin 'fam-a'" in msg and "plugin 'fam-b'" in msg and "FMHUB_DISABLE_PLUGINS" in msg


def test_two_plugins_claiming_one_alias_name_both_ids(bare_hub, family):
    bare_hub.register(family(ns="one", aliases={"lin": ["tiny"]}), name="p1")
    bare_hub.register(family(ns="two", aliases={"lin": ["tiny"]}), name="p2")
    with pytest.raises(fmhub.AmbiguousModelError) as err:
        bare_hub.model_info("tiny")
    msg = str(err.value)
    assert "'p1' (one:lin)" in msg and "'p2' (two:lin)" in msg and "use the full id" in msg
    assert bare_hub.model_info("two:lin").plugin == "p2"  # full ids still work


def test_two_plugins_serving_one_namespace_name_both(bare_hub, family):
    first, second = family(ns="same"), family(ns="same", models=("other",))
    bare_hub.register(first, name="first")
    bare_hub.register(second, name="second")
    for name in ("same:lin", "same:other", "same:unregistered"):
        with pytest.raises(fmhub.AmbiguousModelError) as err:
            bare_hub.model_info(name)
        assert "'first'" in str(err.value) and "'second'" in str(err.value)
        assert "FMHUB_DISABLE_PLUGINS" in str(err.value)


def test_losing_namespace_claimant_is_not_called_for_other_models(bare_hub, family):
    # "second" lost the namespace "same"; it must not act as a cross-cutting plugin on "fam:".
    bare_hub.register(family(ns="same"), name="first")
    loser = family(ns="same", fail="forward")
    bare_hub.register(loser, name="second")
    owner = family(ns="fam")
    bare_hub.register(owner, name="fam")
    bare_hub.load("fam:lin")([1, 2, 3, 4])
    assert loser.calls == [] and [c[0] for c in owner.calls][-3:] == [
        "preprocess",
        "forward",
        "postprocess",
    ]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, ["toy:classify", "toy:embed"]),
        ("toy:*", ["toy:classify", "toy:embed"]),
        ("toy:e*", ["toy:embed"]),
        ("*classifier", ["toy:classify"]),  # aliases match too
        ("TOY:EMB*", ["toy:embed"]),  # any case
        ("embed", ["toy:embed"]),  # no wildcard: a substring
        ("toy-?mbed", ["toy:embed"]),
        ("toy:[c]*", ["toy:classify"]),
        ("timm:*", []),
    ],
)
def test_list_models_wildcards(toy_hub, pattern, expected):
    assert [s.id for s in fmhub.list_models(pattern)] == expected


def test_model_info_is_the_spec_with_its_preprocessing_contract(bare_hub):
    class Vision:
        @hookimpl
        def fmhub_register_namespaces(self, register):
            register(fmhub.Namespace(name="vis"))

        @hookimpl
        def fmhub_register_models(self, register):
            register(
                fmhub.ModelSpec(
                    id="vis:net",
                    aliases=("vnet",),
                    task="classification",
                    modality="image",
                    preprocessing=fmhub.Preprocessing(
                        input_size=(3, 224, 224),
                        mean=(0.5,) * 3,
                        std=(0.25,) * 3,
                        interpolation="bicubic",
                    ),
                    license="apache-2.0",
                    source="https://example.org/vnet",
                )
            )

    bare_hub.register(Vision(), name="vision")
    info = bare_hub.model_info("vnet")
    assert info.preprocessing.input_size == (3, 224, 224) and info.preprocessing.std == (0.25,) * 3
    assert (info.modality, info.license, info.plugin) == ("image", "apache-2.0", "vision")


@pytest.mark.parametrize("bad", ["nocolon", ":x", "x:", "Caps:x", "a b:x"])
def test_spec_ids_must_be_namespace_colon_name(bad):
    with pytest.raises(ValueError, match="namespace"):
        fmhub.ModelSpec(id=bad)
