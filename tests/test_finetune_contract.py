"""The fine-tuning method contract, as docs/finetuning.md states it: a method written from the docs
alone (subclass ``fmhub.FineTuneMethod``, options from ``fmhub.MethodOptions``, register it with
``fmhub_register_finetune_methods``) trains, saves and reloads; the core, not the method, records
what was adapted in ``model.adapter`` (an ``fmhub.Adapter``); an unregistered instance can be
passed as ``method=``, and reloading what it saved needs it registered."""

from __future__ import annotations

import json
import random
import re
import types
from pathlib import Path

import pytest

import fmhub


def make_data(n: int, seed: int):
    rng = random.Random(seed)
    data = []
    for _ in range(n):
        x = [rng.uniform(-1, 1) for _ in range(4)]
        data.append((x, "pos" if x[0] + x[1] > 0 else "neg"))
    return data


TRAIN, EVAL = make_data(256, 0), make_data(64, 1)
FAST = {"epochs": 4, "learning_rate": 1e-2, "batch_size": 16, "progress": False}
XS = [x for x, _ in EVAL]


# -- the method: the code of docs/finetuning.md "Writing a method", run as it is -------------


def doc_method_module() -> types.ModuleType:
    text = (Path(__file__).resolve().parents[1] / "docs" / "finetuning.md").read_text()
    blocks = [
        b
        for b in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
        if "class Layers(fmhub.FineTuneMethod)" in b
    ]
    assert len(blocks) == 1, "docs/finetuning.md must show the Layers method once"
    module = types.ModuleType("fmhub_docs_layers")
    exec(compile(blocks[0], "docs/finetuning.md", "exec"), module.__dict__)  # noqa: S102
    return module


DOC = doc_method_module()
Layers = DOC.Layers


def LayersPlugin():  # the docs' module is the plugin
    return DOC


@pytest.fixture
def hub_with_method(use_hub, monkeypatch):
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy")
    hub = use_hub(fmhub.Hub())
    hub.register(LayersPlugin(), name="layers-method")
    return hub


def scores(results):
    return [[t.score for t in sorted(r.top_k, key=lambda t: t.index)] for r in results]


def assert_same(a, b, atol=1e-6):
    for x, y in zip(scores(a), scores(b)):
        assert max(abs(p - q) for p, q in zip(x, y)) <= atol


def test_a_method_written_from_the_docs_trains_saves_and_reloads(hub_with_method, tmp_path):
    model = fmhub.load("toy:embed")
    fc1 = model.module.fc1.weight.detach().clone()
    result = fmhub.finetune(
        model,
        TRAIN,
        eval=EVAL,
        method="layers",
        method_options={"layers": ["fc2"]},
        output_dir=str(tmp_path),
        **FAST,
    )
    assert result.metrics["accuracy"] >= 0.8, result.history
    assert (model.module.fc1.weight == fc1).all(), "fc1 is not one of the trained layers"
    adapter = model.adapter
    assert isinstance(adapter, fmhub.Adapter)
    assert (adapter.method, adapter.options, adapter.head, adapter.modules) == (
        "layers",
        {"layers": ["fc2"]},
        ["head"],
        ["fc2"],
    )
    assert adapter.peft is None and adapter.fingerprint["shapes"]["fc2.weight"] == [16, 16]
    assert adapter.training["steps"] == result.steps and adapter.training["metrics"]
    manifest = json.loads((result.adapter_path / "fmhub.json").read_text())
    record = json.loads(json.dumps(adapter.to_manifest()))
    assert manifest["training"] == record.pop("training")  # training facts: top level, model card
    assert manifest["adapter"] == record
    assert (result.adapter_path / "adapter.safetensors").is_file()
    again = fmhub.load(str(result.adapter_path))
    assert isinstance(again.adapter, fmhub.Adapter) and again.adapter.method == "layers"
    assert again.adapter.training == adapter.training
    assert_same(again.predict(XS, progress=False), model.predict(XS, progress=False))
    again.merge()
    assert again.adapter is None
    assert_same(again.predict(XS, progress=False), model.predict(XS, progress=False))


def test_the_adapter_of_a_peft_method_holds_the_peft_model(toy_hub):
    pytest.importorskip("peft")
    model = fmhub.load("toy:embed")
    fmhub.finetune(model, TRAIN, method="lora", max_steps=2, progress=False)
    assert type(model.adapter.peft).__name__ == "PeftModel"
    assert model.adapter.modules == ["fc1", "fc2"] and model.adapter.options["r"] == 8
    assert "peft" not in model.adapter.to_manifest()


def test_an_unregistered_instance_trains_and_reloading_needs_it_registered(
    use_hub, monkeypatch, tmp_path
):
    monkeypatch.setenv("FMHUB_LOAD_PLUGINS", "toy")
    use_hub(fmhub.Hub())
    model = fmhub.load("toy:embed")
    assert "layers" not in model.hub.finetune_methods()
    result = fmhub.finetune(
        model,
        TRAIN,
        method=Layers(),
        method_options={"layers": ["fc1"]},
        output_dir=str(tmp_path),
        **FAST,
    )
    assert model.adapter.method == "layers" and model.adapter.modules == ["fc1"]
    plan = fmhub.finetune_plan(fmhub.load("toy:embed"), Layers())
    assert plan.method == "layers" and plan.modules == ["fc2"]
    with pytest.raises(
        fmhub.ManifestError,
        match=r"method 'layers', which no installed plugin "
        r"registers; register it with the fmhub_register_finetune_methods hook",
    ):
        fmhub.load(str(result.adapter_path))
    fmhub.get_hub().register(LayersPlugin(), name="layers-method")
    again = fmhub.load(str(result.adapter_path))
    assert_same(again.predict(XS, progress=False), model.predict(XS, progress=False))


def test_an_instance_must_not_take_a_registered_name(toy_hub):
    class Impostor(Layers):
        name = "lora"

    with pytest.raises(fmhub.FineTuneError, match="has the name of the registered method LoRA"):
        fmhub.finetune(fmhub.load("toy:embed"), TRAIN, method=Impostor(), progress=False)
    with pytest.raises(fmhub.InvalidOptionError, match="'method'"):
        fmhub.finetune(fmhub.load("toy:embed"), TRAIN, method=3.5, progress=False)
    with pytest.raises(fmhub.FineTuneError, match="method must be a registered method's name"):
        fmhub.finetune_plan(fmhub.load("toy:embed"), 3.5)


def test_a_method_setting_model_adapter_itself_is_overruled_by_the_core(toy_hub):
    class Old(Layers):
        name = "old-style"

        def apply(self, model, head, options):
            super().apply(model, head, options)
            model.adapter = {"method": "something else"}

    model = fmhub.load("toy:embed")
    fmhub.finetune(model, TRAIN, method=Old(), max_steps=1, progress=False)
    assert isinstance(model.adapter, fmhub.Adapter) and model.adapter.method == "old-style"


def test_a_peft_method_must_return_its_peft_model(toy_hub):
    class Forgetful(Layers):
        name = "forgetful"
        uses_peft = True

    with pytest.raises(fmhub.FineTuneError, match="returned no PeftModel"):
        fmhub.finetune(fmhub.load("toy:embed"), TRAIN, method=Forgetful(), progress=False)


def test_the_contract_is_exported_from_fmhub_without_torch():
    from fmhub.testing import imported_after

    code = "import fmhub; fmhub.FineTuneMethod, fmhub.MethodOptions, fmhub.Adapter"
    assert imported_after(code, ("torch", "peft")) == []
    assert {"FineTuneMethod", "MethodOptions", "Adapter"} <= set(fmhub.__all__)
