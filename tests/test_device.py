"""Device and dtype placement. CUDA and MPS are faked, so the GPU branches run on any machine."""

from __future__ import annotations

import pytest
import torch

import fmhub
from fmhub._device import move_batch, resolve_device, resolve_dtype

X = [1.0, 2.0, 3.0, 4.0]


@pytest.fixture
def fake(monkeypatch):
    """``fake(cuda=N, mps=bool, bf16=bool, current=i)`` pretends this machine has those devices."""

    def set_up(cuda: int = 0, mps: bool = False, bf16: bool = True, current: int = 0):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_up


@pytest.mark.parametrize(
    ("cuda", "mps", "current", "expected"),
    [
        (2, True, 1, "cuda:1"),  # CUDA first, on the current device
        (1, True, 0, "cuda:0"),
        (0, True, 0, "mps"),  # then Apple MPS
        (0, False, 0, "cpu"),  # then CPU
    ],
)
def test_auto_picks_cuda_then_mps_then_cpu(fake, cuda, mps, current, expected):
    fake(cuda=cuda, mps=mps, current=current)
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device(None) == torch.device(expected)


def test_explicit_devices(fake):
    fake(cuda=2, mps=True, current=0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert resolve_device("mps") == torch.device("mps")
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_index_out_of_range(fake):
    fake(cuda=2)
    with pytest.raises(fmhub.DeviceError, match=r"CUDA device 2, but only 2 \(0..1\) exist"):
        resolve_device("cuda:2")


@pytest.mark.parametrize(
    ("device", "match"),
    [
        ("cuda", "no CUDA device is available"),
        ("cuda:1", "no CUDA device is available"),
        ("mps", "Apple MPS, which is not available"),
        ("gpu", "Invalid device 'gpu'.*'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
        ("meta", "Unsupported device 'meta'"),
    ],
)
def test_unavailable_or_invalid_devices_are_clear_errors(fake, device, match):
    fake(cuda=0, mps=False)
    with pytest.raises(fmhub.DeviceError, match=match):
        resolve_device(device)


@pytest.mark.parametrize(
    ("device", "bf16", "expected"),
    [
        ("cuda:0", True, torch.bfloat16),
        ("cuda:0", False, torch.float16),
        ("mps", True, torch.float32),
        ("cpu", True, torch.float32),
    ],
)
def test_auto_dtype_per_device(fake, device, bf16, expected):
    fake(cuda=1, mps=True, bf16=bf16)
    assert resolve_dtype("auto", torch.device(device)) == expected


def test_explicit_dtypes(fake):
    fake(cuda=1)
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    assert resolve_dtype(torch.float32, cpu) == torch.float32
    assert resolve_dtype("float16", cuda) == torch.float16
    with pytest.raises(fmhub.DeviceError, match="'float16' is not supported on CPU.*'bfloat16'"):
        resolve_dtype("float16", cpu)
    with pytest.raises(fmhub.DeviceError, match="Unsupported dtype 'float64'"):
        resolve_dtype("float64", cpu)


def test_load_refuses_float16_on_cpu(toy_hub):
    with pytest.raises(fmhub.DeviceError, match="float16"):
        fmhub.load("toy:embed", device="cpu", dtype="float16")


def test_load_places_the_module_on_the_resolved_device_and_dtype(toy_hub, fake, monkeypatch):
    """With CUDA faked, ``auto`` asks for the current CUDA device in bfloat16 (the module's
    ``to`` is recorded, not run, as there is no real GPU here)."""
    fake(cuda=2, current=1, bf16=True)
    moves = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moves.append(k) or self)
    fmhub.load("toy:embed")
    assert moves == [{"device": torch.device("cuda", 1), "dtype": torch.bfloat16}]
    moves.clear()
    fmhub.load("toy:embed", device="cuda:0", dtype="float16")
    assert moves == [{"device": torch.device("cuda", 0), "dtype": torch.float16}]


def test_load_on_explicit_cpu(toy_hub):
    model = fmhub.load("toy:embed", device="cpu", dtype="bfloat16")
    assert (model.device, model.dtype) == (torch.device("cpu"), torch.bfloat16)
    assert {p.dtype for p in model.module.parameters()} == {torch.bfloat16}


def test_inputs_follow_the_model_device(toy_hub):
    """Move the module to the ``meta`` device: a forward only works if the core moved the batch
    (a CPU tensor against meta weights raises)."""
    model = fmhub.load("toy:embed")
    batch = model.preprocess([X])
    assert batch["x"].device.type == "cpu"
    model.module.to("meta")
    model._refresh_placement()
    assert model.device.type == "meta"
    out = model.forward(batch)
    assert out.device.type == "meta" and out.shape == (1, 8)


def test_move_batch_walks_containers_and_casts_only_floats():
    x, ids = torch.ones(2, 3), torch.arange(3)
    batch = {"x": x, "ids": ids, "nested": [x, (ids,)], "n": 2, "name": "a"}
    moved = move_batch(batch, torch.device("meta"), torch.bfloat16)
    assert moved["x"].device.type == "meta" and moved["x"].dtype == torch.bfloat16
    assert moved["ids"].dtype == torch.int64 and moved["ids"].device.type == "meta"
    assert moved["nested"][0].device.type == "meta" and moved["nested"][1][0].device.type == "meta"
    assert (moved["n"], moved["name"]) == (2, "a")
    same = move_batch({"x": x}, torch.device("cpu"), torch.float32)
    assert same["x"] is x  # already in place: not copied


def test_a_model_the_plugin_spread_over_devices_is_never_moved(bare_hub, family):
    fam = family(ns="big", placed=True)
    bare_hub.register(fam, name="big")
    model = bare_hub.load("big:lin", device="cpu", dtype="bfloat16")
    devices = {p.device.type for p in model.module.parameters()}
    assert devices == {"cpu", "meta"} and model.placed
    assert {p.dtype for p in model.module.parameters()} == {torch.float32}  # not cast either
    assert model.device.type == "cpu"  # inputs go where the first layer is
    with pytest.raises(fmhub.DeviceError, match="spread over.*never moved"):
        model.to(device="cpu")
    with pytest.raises(fmhub.DeviceError):
        model.to(dtype="bfloat16")
    assert {p.device.type for p in model.module.parameters()} == {"cpu", "meta"}
    out = model.forward(model.preprocess([X]))
    assert out.device.type == "meta"  # ran across both "devices"


def test_move_batch_walks_named_tuples_dataclasses_and_mappings():
    from collections import UserDict, namedtuple
    from dataclasses import dataclass

    Pair = namedtuple("Pair", "a b")

    @dataclass(frozen=True)
    class Batch:
        x: torch.Tensor
        label: str

    class Encoding(UserDict):  # like transformers' BatchEncoding
        pass

    meta = torch.device("meta")
    moved = move_batch(
        [Pair(torch.ones(1), 3), Batch(torch.ones(2), "a"), Encoding(ids=torch.arange(2))],
        meta,
        torch.bfloat16,
    )
    assert isinstance(moved[0], Pair) and moved[0].a.device.type == "meta" and moved[0].b == 3
    assert isinstance(moved[1], Batch) and moved[1].x.dtype == torch.bfloat16
    assert moved[1].x.device.type == "meta" and moved[1].label == "a"
    assert isinstance(moved[2], Encoding) and moved[2]["ids"].device.type == "meta"
