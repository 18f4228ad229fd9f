"""The page, end to end: one uvicorn server on loopback for the session, driven in headless Chromium (Debian's
package) by Playwright for Python. Any console error or page error fails the test.

Set ``LATENTBRIDGE_SCREENSHOTS=DIR`` to keep the screenshots (the README's come from here).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn) is not installed: pip install '.[web]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (the dev extra)")

import latentbridge as lb  # noqa: E402
from latentbridge.photos import photo_tensor  # noqa: E402
from latentbridge.web import WebConfig, create_app, loopback_hosts  # noqa: E402
from latentbridge.zoo import zoo_path  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One latentbridge server for the session, on a free loopback port, as `latentbridge serve` configures it."""
    import uvicorn

    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("web-server")
    app = create_app(WebConfig(work_dir=work / "work", allowed_hosts=loopback_hosts("127.0.0.1"), workers=2))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the test server did not start within 60 s")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it before the tests)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def latent_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page-files") / "chelsea.latent"
    vae = lb.load_vae("zoo-a")
    lb.write_latent(lb.encode(vae, photo_tensor("chelsea", 256)), path)
    return path


def shoot(page, name: str, tmp_path: Path) -> None:
    target = tmp_path / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    keep = os.environ.get("LATENTBRIDGE_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(target, Path(keep) / target.name)


def loaded(page, selector: str) -> None:
    """Wait until the image at ``selector`` has decoded (naturalWidth > 0)."""
    page.wait_for_function(
        f"() => {{ const i = document.querySelector('{selector}'); return i && i.complete && i.naturalWidth > 0; }}"
    )


def test_the_page_end_to_end(server, browser, latent_file, tmp_path):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(server + "/")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('drop a latent file')")

    # keyboard: the first stops are the two file fields, then the VAE list
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "latent-input"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "vae-input"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "vae-select"

    # drag and drop the latent onto its field: the facts, the identify bars and the preview at once
    data = list(latent_file.read_bytes())
    drop = page.evaluate_handle(
        "(bytes) => { const t = new DataTransfer(); "
        "t.items.add(new File([new Uint8Array(bytes)], 'chelsea.latent')); return t; }",
        data,
    )
    page.dispatch_event("#latent-drop", "drop", {"dataTransfer": drop})
    loaded(page, "#preview-image")
    facts = page.inner_text("#facts")
    assert "zoo-a" in facts and "[1, 4, 32, 32] (NCHW)" in facts
    bars = page.locator("#identify .bar")
    assert bars.count() >= 1 and "zoo-a raw" in bars.first.inner_text()
    width = page.evaluate("document.querySelector('#identify .bar .fill').style.width")
    assert float(width.rstrip("%")) > 90  # the zoo-a raw candidate's probability (99 %)
    assert "published factors" in page.inner_text("#preview figcaption")

    # pick the right VAE: the verdict, then the decode with its progress
    page.evaluate(
        "() => { window.seen = []; const s = document.getElementById('decode-status');"
        " new MutationObserver(() => window.seen.push(s.textContent)).observe(s, {childList: true, subtree: true,"
        " characterData: true}); }"
    )
    page.select_option("#vae-select", label="zoo-a (built-in zoo)")
    page.wait_for_function("() => document.getElementById('verdict')?.textContent === 'ok'")
    loaded(page, "#decoded-image")
    assert page.evaluate("document.getElementById('decode-progress').value") == page.evaluate(
        "document.getElementById('decode-progress').max"
    )
    seen = page.evaluate("window.seen")
    assert any("decode zoo-a: 1 of 1 steps" in s for s in seen), seen
    assert "decoded with zoo-a" in page.inner_text("#decode-status")
    assert page.evaluate("document.getElementById('decoded-image').naturalWidth") == 256
    shoot(page, "web-ok", tmp_path)

    # upload the wrong VAE: the check's verdict and its finding cards, with their evidence
    page.set_input_files("#vae-input", str(zoo_path("zoo-b")))
    page.wait_for_function("() => document.getElementById('verdict')?.textContent === 'error'")
    card = page.locator("#findings article[data-code='family-mismatch']")
    assert card.count() == 1
    text = card.inner_text()
    assert "evidence: fact" in text and "fix:" in text and lb.FINDINGS["family-mismatch"].title in text
    assert "latent format" in text and "zoo-b" in text  # the evidence, key by key
    assert page.inner_text("#decode-button") == "Decode anyway"
    shoot(page, "web-error", tmp_path)

    # compare the zoo, transfer to zoo-b, build the report
    page.click("#compare-button")
    page.wait_for_selector("#compare-out table")
    rows = page.locator("#compare-out table tr")
    assert rows.count() == 1 + 3  # zoo-a, zoo-b, zoo-c are ticked first
    loaded(page, "#compare-out img")
    page.select_option("#vae-select", label="zoo-a (built-in zoo)")
    page.wait_for_function("() => document.getElementById('verdict')?.textContent === 'ok'")
    page.select_option("#transfer-target", label="zoo-b (built-in zoo)")
    page.click("#transfer-button")
    page.wait_for_selector("#fidelity")
    assert "reencode" in page.inner_text("#fidelity")
    with page.expect_download() as download:
        page.click("#transfer-out a")
    moved = tmp_path / download.value.suggested_filename
    download.value.save_as(moved)
    assert lb.read_latent(moved).format_name == "zoo-b"
    page.click("#report-button")
    page.wait_for_selector("#report-link")
    report = page.request.get(server + page.get_attribute("#report-link", "href"))
    assert report.status == 200 and "chelsea.latent" in report.text()
    shoot(page, "web-more", tmp_path)
    context.close()
    assert not problems, problems
