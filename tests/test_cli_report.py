"""`latentbridge report` as a user types it: one HTML page for two latent files, plus TensorBoard events."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.files import write_latent
from latentbridge.formats import get_format
from latentbridge.latent import Latent
from latentbridge.photos import photo_tensor
from latentbridge.report import read_events

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def latents(shared_weights, vaelight_files, tmp_path_factory):
    from latentbridge import codec, weights

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("rep")
    light = vaelight_files
    image = codec.encode(weights.load_vae(light), photo_tensor("astronaut", 128))
    a = write_latent(image, folder / "astronaut.latent")
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    b = write_latent(Latent(x, get_format("sd1"), "model"), folder / "noise.safetensors", container="safetensors")
    return a, b, str(light[1])


def test_report_writes_one_page_and_an_event_file(latents, tmp_path):
    a, b, light = latents
    out, tb = tmp_path / "report.html", tmp_path / "tb"
    args = ["report", str(a), str(b), "--vae", light, "-o", str(out), "--tensorboard", str(tb)]
    result = runner.invoke(app, args, env={"LATENTBRIDGE_HOME": str(tmp_path / "home")})
    # the noise latent is refused by the check (its values fit no SD1 latent): the page is written, the exit is 2
    assert result.exit_code == 2, result.output
    assert "check of noise.safetensors with" in result.output and "fingerprint-mismatch" in result.output
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "astronaut.latent" in page and "noise.safetensors" in page
    assert page.count('<section class="summary"') == 1 and page.count('id="latent-') == 2
    for section in ("Inspect", "Identify", "Check", "Previews", "Diagnostics", "Comparison"):
        assert page.count(f"<h3>{section}</h3>") == 2
    assert str(tmp_path / "home" / "previews") in page  # the fits folder came from $LATENTBRIDGE_HOME
    (events,) = tb.iterdir()
    steps = {e["step"] for e in read_events(events) if "values" in e}
    assert steps == {0, 1}  # one step per latent file, in order


def test_report_needs_an_output(latents):
    a, _, _ = latents
    result = runner.invoke(app, ["report", str(a)])
    assert result.exit_code == 2 and "nothing to write" in result.output


def test_report_exits_2_on_an_error_verdict_and_reads_token_sequences_with_grid(tmp_path):
    """The page is written either way; an error verdict exits 2 (as `check`); --grid, which the reader's hint for
    a token sequence names, unpacks one."""
    import latentbridge as lb

    vae = lb.load_vae("zoo-a")
    a = write_latent(lb.encode(vae, photo_tensor("coffee", 64)), tmp_path / "coffee.latent")
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(a), "--vae", "zoo-b", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "check of coffee.latent with zoo-b: family-mismatch" in result.output and out.exists()
    tokens = torch.randn(1, 256, 128, generator=torch.Generator().manual_seed(1))  # FLUX.2 tokens of 256 × 256 px
    seq = tmp_path / "tokens.safetensors"
    from safetensors.torch import save_file

    save_file({"latents": tokens}, seq)
    refused = runner.invoke(app, ["report", str(seq), "-o", str(out), "--overwrite"])
    assert refused.exit_code == 1 and "pass --grid ROWSxCOLUMNS" in refused.output  # the hint names the option
    done = runner.invoke(
        app, ["report", str(seq), "-o", str(out), "--overwrite", "--format", "flux2", "--grid", "16x16"]
    )
    assert done.exit_code == 0, done.output
    assert "[1, 128, 16, 16]" in out.read_text(encoding="utf-8")
