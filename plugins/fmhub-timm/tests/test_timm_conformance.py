"""The core's conformance kit on tiny timm models: hub cache, checkpoint=, each task."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmhub.testing import ConformanceCase, ConformanceSuite
from fmhub_timm.testing import photos, write_checkpoint

_P = photos()
INPUTS = [_P["chelsea"], Image.fromarray(_P["coffee"]), _P["camera"], _P["logo"]]
BAD = [
    np.zeros((0, 0, 3), np.uint8),
    "no/such/photo.jpg",
    42,
    b"not an image",
    np.zeros((8, 8, 3), np.float64),
]
HEAVY = ("torch", "timm")


#: Written by the class fixture below; the path is fixed at import so the case can name it.
CHECKPOINT = Path(tempfile.mkdtemp(prefix="fmhub-timm-ckpt-")) / "resnet.safetensors"


@pytest.fixture(autouse=True, scope="module")
def _checkpoint():
    write_checkpoint(CHECKPOINT, "test_resnet", seed=4, num_classes=10)
    yield
    shutil.rmtree(CHECKPOINT.parent, ignore_errors=True)


class TestTimmConformance(ConformanceSuite):
    cases = [
        ConformanceCase(
            model="timm:test_vit.r160_in1k",
            inputs=INPUTS,
            task="classification",
            heavy_modules=HEAVY,
            bad_inputs=BAD,
        ),
        ConformanceCase(
            model="timm:test_efficientnet.r160_in1k",
            inputs=INPUTS[:2],
            task="embedding",
            options={"task": "embedding"},
            heavy_modules=HEAVY,
            bad_inputs=BAD[:2],
            atol=1e-4,
        ),
        ConformanceCase(
            model="timm:test_convnext.r160_in1k",
            inputs=INPUTS[2:],
            task="feature-maps",
            options={"task": "feature-maps"},
            heavy_modules=HEAVY,
            atol=1e-4,
            finetune=False,
        ),  # features_only: no classifier to fine-tune
    ]


class TestTimmCheckpointConformance(ConformanceSuite):
    """A local .safetensors state dict with a 10-class head, through ``checkpoint=``."""

    cases = [
        ConformanceCase(
            model="timm:test_resnet",
            inputs=INPUTS[:3],
            task="classification",
            options={"checkpoint": str(CHECKPOINT)},
            heavy_modules=HEAVY,
            atol=1e-4,
            id="checkpoint",
        )
    ]

    def test_checkpoint_head_is_used(self, fmhub_model):
        assert fmhub_model.module.num_classes == 10 and fmhub_model.labels is None
