"""Postprocessing edge cases that the tiny models do not reach: NHWC feature maps, token maps."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import fmhub
from fmhub.results import FeatureMaps
from fmhub_timm._stages import postprocess


def _model(output_fmt):
    return SimpleNamespace(
        task="feature-maps",
        module=SimpleNamespace(output_fmt=output_fmt),
        spec=SimpleNamespace(id="timm:fake"),
    )


def test_nhwc_feature_maps_become_chw():
    nchw = torch.randn(2, 5, 4, 3)
    results = postprocess(_model("NHWC"), [nchw.permute(0, 2, 3, 1)])
    assert all(isinstance(r, FeatureMaps) for r in results)
    np.testing.assert_array_equal(results[1].maps[0], nchw[1].numpy())
    same = postprocess(_model("NCHW"), [nchw])
    np.testing.assert_array_equal(same[0].maps[0], nchw[0].numpy())


def test_token_maps_are_refused_with_advice():
    with pytest.raises(fmhub.InvalidOptionError, match="task='embedding'"):
        postprocess(_model("NCHW"), [torch.randn(2, 49, 8)])
