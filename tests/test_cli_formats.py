"""`latentbridge formats` as a user types it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.formats import formats

runner = CliRunner()


def test_table_lists_every_format():
    result = runner.invoke(app, ["formats"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in formats():
        assert name in result.output


def test_one_format_shows_numbers_and_sources():
    result = runner.invoke(app, ["formats", "sd3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "1.5305" in result.output and "0.0609" in result.output
    assert "scaling_factor 1.5305" in result.output  # the source note


def test_json_is_complete():
    result = runner.invoke(app, ["formats", "--json"])
    data = json.loads(result.output)
    assert [d["name"] for d in data] == list(formats())
    flux2 = next(d for d in data if d["name"] == "flux2")
    assert flux2["model_channels"] == 128 and flux2["model_spatial_ratio"] == 16
    assert set(flux2["sources"]) >= {"geometry", "scale", "norm", "rgb", "size_multiple"}


def test_unknown_name_exits_1_with_suggestion():
    result = runner.invoke(app, ["formats", "sdx1"])
    assert result.exit_code == 1
    assert "unknown latent format 'sdx1'" in result.output and "Did you mean" in result.output


def test_markdown_has_one_row_per_format():
    result = runner.invoke(app, ["formats", "--markdown"])
    assert result.exit_code == 0
    rows = [line for line in result.output.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == list(formats())
    assert all(r.count(" | ") == 5 for r in rows)  # six cells: no stray '|' inside a cell
