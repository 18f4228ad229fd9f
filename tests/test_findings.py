"""The finding catalogue: one meaning per code, every emitted code catalogued, findings checked against it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import latentbridge
from latentbridge.checks import EVIDENCE_KINDS, FINDINGS, Finding
from latentbridge.latent import LAYOUT_NAMES

CHECKS = Path(latentbridge.__file__).parent / "checks"


def emitted_codes() -> set[str]:
    """Every code a ``Finding(...)`` in the checks package is made with (literal first arguments), plus the
    layout codes the layout check takes from :data:`latentbridge.latent.LAYOUT_NAMES`."""
    codes = {code for code, _, _ in LAYOUT_NAMES.values()}
    for path in CHECKS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Finding" and node.args:
                first = node.args[0]
                choices = (first.body, first.orelse) if isinstance(first, ast.IfExp) else (first,)
                codes |= {c.value for c in choices if isinstance(c, ast.Constant) and isinstance(c.value, str)}
    return codes


def test_every_emitted_code_is_catalogued_and_every_catalogued_code_is_emitted():
    assert emitted_codes() == set(FINDINGS)


def test_the_catalogue_is_complete_per_code():
    for code, kind in FINDINGS.items():
        assert kind.code == code and kind.title and kind.severities
        assert kind.evidence_kind in EVIDENCE_KINDS
    # the two codes that had two meanings each are split: recorded facts vs provenance vs statistics
    assert FINDINGS["ratio-mismatch"].evidence_kind == "fact"
    assert FINDINGS["source-size-mismatch"].evidence_kind == "provenance"
    assert FINDINGS["family-mismatch"].evidence_kind == "fact"
    assert FINDINGS["fingerprint-mismatch"].evidence_kind == "statistics"
    assert latentbridge.FINDINGS is FINDINGS


def test_a_finding_is_checked_against_its_catalogue_entry():
    f = Finding("channel-mismatch", "error", "4 channels; the VAE takes 16", evidence=(("latent_channels", 4),))
    assert f.evidence_kind == "fact" and f.title == "a channel count the VAE does not take"
    assert f.to_dict()["evidence_kind"] == "fact"
    with pytest.raises(ValueError, match="finding code 'channel-mixup' is not in the catalogue"):
        Finding("channel-mixup", "error", "")
    with pytest.raises(ValueError, match=r"finding 'channel-mismatch': severity must be one of \('error',\)"):
        Finding("channel-mismatch", "warn", "")
    with pytest.raises(ValueError, match=r"evidence \['pixels'\] is not catalogued"):
        Finding("channel-mismatch", "error", "", evidence=(("pixels", 1),))
    with pytest.raises(ValueError, match="rests on fact evidence, not 'statistics'"):
        Finding("channel-mismatch", "error", "", evidence_kind="statistics")
