"""The Latent value: layouts, spaces, provenance."""

from __future__ import annotations

import pytest
import torch

from latentbridge.errors import ShapeError
from latentbridge.formats import get_format
from latentbridge.latent import Latent, Provenance, to_layout


def test_layout_round_trips():
    x = torch.randn(2, 4, 3, 5)
    for layout in ("NHWC", "CHWN", "NWHC"):
        assert torch.equal(to_layout(to_layout(x, "NCHW", layout), layout, "NCHW"), x)
    assert to_layout(x[0], "CHW", "NCHW").shape == (1, 4, 3, 5)
    v = torch.randn(1, 16, 5, 4, 4)
    assert to_layout(v, "NCTHW", "NTCHW").shape == (1, 5, 16, 4, 4)


def test_layout_errors():
    with pytest.raises(ShapeError, match="dimension T has size 5, not 1"):
        to_layout(torch.zeros(1, 16, 5, 4, 4), "NCTHW", "NCHW")
    with pytest.raises(ShapeError, match="unknown layout 'NCXY'"):
        Latent(torch.zeros(1, 4, 2, 2), layout="NCXY")
    with pytest.raises(ShapeError, match="layout 'NCHW' has 4 dimensions but the tensor has 3"):
        Latent(torch.zeros(4, 2, 2))


def test_spaces_via_format():
    x = torch.randn(1, 4, 8, 8)
    lat = Latent(x, get_format("sdxl"), "raw")
    model = lat.to_space("model")
    torch.testing.assert_close(model.tensor, x * 0.13025)
    torch.testing.assert_close(model.to_space("raw").tensor, x)
    nhwc = Latent(x.permute(0, 2, 3, 1), get_format("sdxl"), "raw", "NHWC")
    torch.testing.assert_close(nhwc.to_space("model").tensor, model.tensor)


def test_unknown_format_or_space_is_a_clear_error():
    with pytest.raises(ValueError, match=r"format is unknown.*--format NAME"):
        Latent(torch.zeros(1, 4, 2, 2), space="raw").to_space("model")
    with pytest.raises(ValueError, match=r"space is unknown.*--space raw\|model"):
        Latent(torch.zeros(1, 4, 2, 2), get_format("sd1")).to_space("model")


def test_provenance_round_trip_keeps_unknown_keys():
    p = Provenance(vae_name="zoo-a", seed=7, history=("encode zoo-a",)).then("transfer zoo-a->zoo-b")
    d = p.to_dict()
    d["future_field"] = 3
    q = Provenance.from_dict(d)
    assert q.history == ("encode zoo-a", "transfer zoo-a->zoo-b")
    assert dict(q.extra) == {"future_field": "3"}
    assert Provenance.from_dict(q.to_dict()) == q
