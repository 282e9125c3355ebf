"""The registered catalogue stays true to the installed timm, and registration stays light."""

from __future__ import annotations

import pytest

from fmhub.testing import imported_after
from fmhub_timm._catalog import ROWS, catalog_specs


@pytest.mark.parametrize("spec", catalog_specs(), ids=lambda s: s.id)
def test_registered_preprocessing_matches_timm(spec):
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(spec.name)
    pre = spec.preprocessing
    assert pre.input_size == tuple(cfg.input_size)
    assert pre.interpolation == cfg.interpolation and pre.crop_pct == cfg.crop_pct
    assert pre.mean == tuple(cfg.mean) and pre.std == tuple(cfg.std)
    assert spec.license == cfg.license and spec.source == f"hf-hub:{cfg.hf_hub_id}"
    assert (spec.task == "classification") == bool(cfg.num_classes)


def test_aliases_are_unique():
    aliases = [a for e in ROWS for a in e.aliases]
    assert len(aliases) == len(set(aliases))


def test_listing_imports_neither_torch_nor_timm():
    code = (
        "import fmhub; fmhub.list_models('timm:*'); fmhub.model_info('timm:resnet18'); "
        "fmhub.model_info('timm:hf-hub:timm/resnet18.a1_in1k'); fmhub.model_info('resnet50')"
    )
    assert imported_after(code, ("torch", "timm", "PIL", "numpy")) == []


def test_whole_timm_catalogue_is_listed_as_fmhub_ids():
    import timm

    from fmhub_timm import list_timm_models

    ids = list_timm_models("test_vit*")
    assert "timm:test_vit.r160_in1k" in ids
    assert len(list_timm_models(pretrained=False)) == len(timm.list_models())
