"""Names, options and policies of the hf: namespace: resolution without heavy imports, revisions,
offline behaviour, untrusted configs, task override, truncation, bad inputs, device_map, saving."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

import fmhub
from fmhub.testing import imported_after
from fmhub_transformers import ALIASES, TransformersOptions
from fmhub_transformers.testing import CORPUS, build_tiny_model, install_in_hub_cache

pytestmark = pytest.mark.usefixtures("offline_hub")


# -- names ---------------------------------------------------------------------------------------


def test_aliases_and_any_repo_id_resolve_without_heavy_imports():
    code = (
        "import fmhub; [fmhub.model_info(a) for a in ('bert-base', 'all-MiniLM-L6-v2', "
        "'roberta-base', 'distilbert-base', 'bert-large')]; fmhub.model_info('hf:any-org/any.model-1')"
    )
    assert imported_after(code, ("torch", "transformers", "tokenizers", "huggingface_hub")) == []


@pytest.mark.parametrize(
    "alias,repo",
    [
        ("bert-base", "google-bert/bert-base-uncased"),
        ("bert-large", "google-bert/bert-large-uncased"),
        ("distilbert-base", "distilbert/distilbert-base-uncased"),
        ("roberta-base", "FacebookAI/roberta-base"),
        ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
    ],
)
def test_alias_targets(alias, repo):
    spec = fmhub.model_info(alias)
    assert spec.id == f"hf:{repo}" and spec.plugin == "transformers" and alias in spec.aliases
    assert spec.modality == "text" and spec.preprocessing.max_tokens


def test_every_alias_is_listed():
    listed = {a for s in fmhub.list_models("hf:*") for a in s.aliases}
    assert set(ALIASES) <= listed


@pytest.mark.parametrize("bad", ["org/../x", "a/b/c", "org/na me", "--x", "org/x."])
def test_malformed_repo_ids_are_unknown_models(bad):
    with pytest.raises(fmhub.UnknownModelError):
        fmhub.model_info(f"hf:{bad}")


def test_revision_in_the_name_points_to_the_option():
    with pytest.raises(fmhub.UnknownModelError, match=r"revision='v2'"):
        fmhub.model_info("hf:org/name@v2")


def test_claim_path_ignores_folders_of_other_families(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architecture": "resnet50", "num_classes": 3})
    )
    (tmp_path / "tokenizer.json").write_text("{}")
    import fmhub_transformers

    assert fmhub_transformers.fmhub_claim_path(path=str(tmp_path)) is None
    (tmp_path / "config.json").write_text("not json")
    assert fmhub_transformers.fmhub_claim_path(path=str(tmp_path)) is None


def test_claimed_folder_reports_detected_task(tiny_zoo):
    spec = fmhub.model_info(str(tiny_zoo["electra-ner"]))
    assert spec.task == "token-classification" and spec.path and spec.architecture == "electra"


# -- hub cache, revisions, offline ----------------------------------------------------------------


def test_revision_option_loads_that_commit(tmp_path, offline_hub):
    v1 = build_tiny_model(tmp_path / "v1", "bert", "embedding", seed=1)
    v2 = build_tiny_model(tmp_path / "v2", "bert", "embedding", seed=2)
    sha1 = install_in_hub_cache(offline_hub, "tiny-org/revs", v1).name
    sha2 = install_in_hub_cache(offline_hub, "tiny-org/revs", v2, revision="v2").name
    main, tagged = fmhub.load("hf:tiny-org/revs"), fmhub.load("hf:tiny-org/revs", revision="v2")
    assert main.info["revision"] == sha1 and tagged.info["revision"] == sha2
    assert not np.allclose(main(CORPUS[0]), tagged(CORPUS[0]))
    np.testing.assert_allclose(tagged(CORPUS[0]), fmhub.load(str(v2))(CORPUS[0]), atol=1e-6)


def test_offline_and_not_cached_is_a_clear_error_without_network(monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError("network used while HF_HUB_OFFLINE=1")

    for name in ("getaddrinfo", "create_connection"):
        monkeypatch.setattr(socket, name, no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(
        fmhub.PluginError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"
    ):
        fmhub.load("hf:nobody/not-cached")


# -- untrusted config.json ------------------------------------------------------------------------


def _copy(tiny_zoo, tmp_path, name="mpnet-emb"):
    dest = tmp_path / name
    shutil.copytree(tiny_zoo[name], dest)
    return dest


@pytest.mark.parametrize(
    "content,match",
    [
        ("{not json", r"Cannot read '.*config\.json': not JSON"),
        ("[1, 2]", r"config\.json': a JSON list, not an object"),
        (
            json.dumps({"architectures": ["BertModel"]}),
            r"config\.json': field 'model_type': Field required",
        ),
        (
            json.dumps({"model_type": "bert", "architectures": "BertModel"}),
            r"config\.json': field 'architectures': Input should be a valid tuple",
        ),
        (
            json.dumps({"model_type": "bert", "id2label": {"zero": "a"}}),
            r"config\.json': field 'id2label\.zero\.\[key\]': Input should be a valid integer",
        ),
        (
            json.dumps({"model_type": "bert", "id2label": {"0": "a", "2": "b"}}),
            r"field 'id2label':.*number classes 0..N-1",
        ),
    ],
)
def test_bad_config_json_from_the_hub_is_refused_clearly(
    tiny_zoo, tmp_path, offline_hub, content, match
):
    folder = _copy(tiny_zoo, tmp_path)
    (folder / "config.json").write_text(content)
    repo = f"tiny-org/broken-{abs(hash(content))}"
    install_in_hub_cache(offline_hub, repo, folder)
    with pytest.raises(fmhub.FmhubError, match=match):
        fmhub.load(f"hf:{repo}")


def test_bad_config_json_in_a_prefixed_local_folder_is_reported(tiny_zoo, tmp_path):
    folder = _copy(tiny_zoo, tmp_path)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": 1}))
    with pytest.raises(fmhub.ManifestError, match=r"config\.json': field 'architectures'"):
        fmhub.load("hf:" + str(folder))


def test_remote_code_is_never_run_unless_asked(tiny_zoo, tmp_path):
    folder = _copy(tiny_zoo, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="evil-net", auto_map={"AutoModel": "evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(fmhub.InvalidOptionError, match="trust_remote_code=True"):
        fmhub.load(str(folder))
    assert TransformersOptions().trust_remote_code is False


@pytest.mark.parametrize(
    "file,content,field",
    [
        ("sentence_bert_config.json", {"max_seq_length": "long"}, "max_seq_length"),  # wrong type
        ("modules.json", [{"idx": 0, "name": "0", "path": ""}], "0.type"),  # missing field
    ],
)
def test_bad_sentence_transformers_file_names_file_and_field(
    tiny_zoo, tmp_path, file, content, field
):
    folder = _copy(tiny_zoo, tmp_path, "bert-st")
    (folder / file).write_text(json.dumps(content))
    with pytest.raises(fmhub.ManifestError, match=rf"{file}': field '{field}'"):
        fmhub.load(str(folder))


def test_unsupported_sentence_transformers_module_is_refused(tiny_zoo, tmp_path):
    folder = _copy(tiny_zoo, tmp_path, "bert-st")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(fmhub.PluginError, match="'Dense' module"):
        fmhub.load(str(folder))


# -- tasks and options ----------------------------------------------------------------------------


def test_task_override_uses_the_encoder_of_a_classifier(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["roberta-cls"]), task="embedding")
    assert model.task == "embedding" and model.labels is None
    assert model(CORPUS[0]).shape == (32,)


def test_task_override_refuses_a_head_the_checkpoint_lacks(tiny_zoo):
    with pytest.raises(fmhub.PluginError, match="no trained weights for the classification"):
        fmhub.load(str(tiny_zoo["mpnet-emb"]), task="classification")
    with pytest.raises(fmhub.InvalidOptionError, match="not served"):
        fmhub.load(str(tiny_zoo["mpnet-emb"]), task="feature-maps")
    with pytest.raises(fmhub.InvalidOptionError, match="no transcription model"):
        fmhub.load(str(tiny_zoo["mpnet-emb"]), task="transcription")


def test_unknown_option_is_named():
    with pytest.raises(fmhub.InvalidOptionError, match="revison"):
        fmhub.load("hf:tiny-org/bert-st", revison="main")


def test_pooling_and_normalize_overrides(tiny_zoo):
    default = fmhub.load(str(tiny_zoo["bert-st"]))
    assert default.info["pooling"] == ["mean"] and default.info["normalize"] is True
    raw = fmhub.load(str(tiny_zoo["bert-st"]), pooling="cls", normalize=False)
    vec = raw(CORPUS[0])
    assert raw.info["pooling"] == ["cls"] and abs(float(np.linalg.norm(vec)) - 1.0) > 1e-3


def test_top_k_option(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["roberta-cls"]), top_k=2)
    assert len(model(CORPUS[0]).top_k) == 2


# -- inputs: truncation, empty, non-text, order ---------------------------------------------------


def test_over_long_input_is_truncated_with_a_warning(tiny_zoo):
    long = " ".join(CORPUS) * 4
    model = fmhub.load(str(tiny_zoo["electra-ner"]))
    with pytest.warns(UserWarning, match="longer than 64 tokens were truncated"):
        result = model(long)
    assert all(e.end <= len(long) for e in result.entities)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fmhub.load(str(tiny_zoo["electra-ner"]), truncation="silent")(long)
    strict = fmhub.load(str(tiny_zoo["electra-ner"]), truncation="error")
    with pytest.raises(fmhub.InputError, match="longer than 64 tokens"):
        strict.predict([CORPUS[0], long])


def test_max_length_option(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["mpnet-emb"]), max_length=8, truncation="silent")
    batch = model.preprocess([" ".join(CORPUS)])
    assert batch["input_ids"].shape[1] == 8
    with pytest.raises(fmhub.InvalidOptionError, match="max_length<=64"):
        fmhub.load(str(tiny_zoo["mpnet-emb"]), max_length=500)


def test_empty_string_policy(tiny_zoo):
    emb = fmhub.load(str(tiny_zoo["bert-st"]))
    assert emb("").shape == (32,) and np.isfinite(emb("")).all()
    assert fmhub.load(str(tiny_zoo["electra-ner"]))("").entities == ()
    with pytest.raises(fmhub.InputError, match="exactly one"):
        fmhub.load(str(tiny_zoo["distilbert-mlm"]))("")


def test_non_text_inputs_name_the_input(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["bert-st"]))
    with pytest.raises(fmhub.InputError, match=r"Input 1: got bytes.*decode it first"):
        model.predict(["fine", b"raw"])


def test_batches_are_token_length_sorted_and_results_in_input_order(tiny_zoo):
    model = fmhub.load(str(tiny_zoo["bert-st"]), truncation="silent")
    texts = [CORPUS[15], CORPUS[10], "", CORPUS[3], CORPUS[6], " ".join(CORPUS), 7]
    order = model.hub.call("fmhub_batch_order", model.spec.plugin, model=model, inputs=texts)
    tokens = [
        len(model.processor.tokenizer(t, truncation=True, max_length=32)["input_ids"])
        if isinstance(t, str)
        else 0
        for t in texts
    ]
    assert sorted(order) == list(range(len(texts)))
    assert [tokens[i] for i in order] == sorted(tokens, reverse=True)
    assert order[-1] == 6, "non-text inputs sort last"
    texts = texts[:-1]
    seen = []
    real = model.preprocess
    model.preprocess = lambda xs: (seen.append(list(xs)), real(xs))[1]
    batched = model.predict(texts, batch_size=2)
    assert seen[0] == [texts[order[0]], texts[order[1]]]  # the two longest share a batch
    assert max(b["attention_mask"].shape[1] for b in map(real, seen)) == 32  # truncated
    for text, vec in zip(texts, batched):
        np.testing.assert_allclose(vec, model(text), atol=1e-5)


# -- device_map, saving ---------------------------------------------------------------------------


def test_device_map_delegates_placement(tiny_zoo):
    pytest.importorskip("accelerate")
    ref = fmhub.load(str(tiny_zoo["bert-st"]))
    model = fmhub.load(str(tiny_zoo["bert-st"]), device_map="cpu")
    assert model.placed
    np.testing.assert_allclose(model(CORPUS[0]), ref(CORPUS[0]), atol=1e-6)
    with pytest.raises(fmhub.DeviceError, match="device_map"):
        model.to(dtype="bfloat16")


def test_saved_embedding_folder_loads_in_sentence_transformers(tiny_zoo, tmp_path):
    from sentence_transformers import SentenceTransformer

    model = fmhub.load("hf:tiny-org/bert-st")
    folder = model.save(tmp_path / "saved")
    again = fmhub.load(str(folder))
    assert again.info["pooling"] == ["mean"] and again.info["normalize"] is True
    assert again.processor.max_length == 32
    theirs = SentenceTransformer(str(folder), device="cpu").encode(CORPUS[:3])
    np.testing.assert_allclose(np.stack(again.predict(CORPUS[:3])), theirs, atol=2e-5)


def test_a_repo_ids_modality_is_known_once_loaded():
    assert fmhub.model_info("hf:tiny-org/bert-st").modality is None  # its config is not read yet
    assert fmhub.load("hf:tiny-org/bert-st").spec.modality == "text"
    assert fmhub.load("hf:tiny-org/whisper-asr").spec.modality == "audio"
