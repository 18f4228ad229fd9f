"""Screenshot the example workflows in the real ComfyUI frontend (docs/images/comfyui_*.png for the README).

    .venv-comfy/bin/pip install playwright      # once; drives Debian's /usr/bin/chromium (no browser download)
    .venv-comfy/bin/python scripts/comfy_screenshot.py [--port 8199]

Starts ComfyUI's own server (main.py, --cpu) from ../shared/comfyui with every folder in a temporary base
directory, the pack linked as custom_nodes/latentbridge, empty stand-ins for the model files the examples name (the
frontend only lists file names) and a photo for LoadImage; opens the frontend in headless Chromium, loads each
examples/comfyui/*.ui.json with the frontend's own ``app.loadGraphData``, fits the view and saves a screenshot.
Then it runs the mismatch_stops example with random-weight VAEs in place of the named files (SD-width KL files:
ComfyUI builds SD-class VAEs at SD's widths), so that the Check node's stop shows as the frontend shows it: a
screenshot with ComfyUI's error dialog.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMFYUI = Path(os.environ.get("LATENTBRIDGE_COMFYUI") or REPO.parent / "shared" / "comfyui").resolve()
EXAMPLES = REPO / "examples" / "comfyui"
OUT = REPO / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
SCALE = 0.85  # canvas zoom of the screenshots
# Put the graph's top-left corner near the canvas's at SCALE and return the screen box around all nodes.
FRAME = """(scale) => {
  const canvas = window.app.canvas, nodes = window.app.graph._nodes;
  const x0 = Math.min(...nodes.map(n => n.pos[0])), y0 = Math.min(...nodes.map(n => n.pos[1])) - 30;
  const x1 = Math.max(...nodes.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...nodes.map(n => n.pos[1] + n.size[1]));
  canvas.ds.scale = scale;
  canvas.ds.offset = [90 / scale - x0, 150 / scale - y0];
  canvas.setDirty(true, true);
  const rect = canvas.canvas.getBoundingClientRect();
  return {x: rect.left + 60, y: rect.top + 120, width: (x1 - x0) * scale + 60, height: (y1 - y0) * scale + 60};
}"""


def _base(tmp: Path) -> Path:
    base = tmp / "base"
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models/vae", "models/checkpoints"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "custom_nodes" / "latentbridge").symlink_to(REPO / "custom_nodes" / "latentbridge")
    # the frontend's settings: no first-run template browser, no minimap over the graph
    settings = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False}
    (base / "user" / "default").mkdir(parents=True, exist_ok=True)
    (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps(settings))
    for api in EXAMPLES.glob("*.api.json"):
        for node in json.loads(api.read_text()).values():
            inputs = node["inputs"]
            if "vae_name" in inputs:
                (base / "models" / "vae" / inputs["vae_name"]).touch()
            if "ckpt_name" in inputs:
                (base / "models" / "checkpoints" / inputs["ckpt_name"]).touch()
    from PIL import Image

    sys.path.insert(0, str(REPO / "src"))
    from latentbridge.photos import load_photo

    Image.fromarray(load_photo("astronaut")).resize((256, 256)).save(base / "input" / "example.png")
    return base


def _wait(url: str, seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"ComfyUI did not answer at {url} within {seconds:.0f} s")


def _small(path: Path) -> None:
    """Rewrite a screenshot as a 256-colour PNG (UI pictures lose nothing visible; a tenth of the bytes)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def _error_shot(page: object, base: Path) -> None:
    """Run mismatch_stops with random-weight VAEs in place of the named files; screenshot ComfyUI's error dialog."""
    sys.path.insert(0, str(REPO / "tests" / "comfy"))
    from test_comfy_smoke import _kl_file

    sd = _kl_file(base / "models" / "vae" / "sd_random.safetensors", 4, quant=True, seed=1)
    kl16 = _kl_file(base / "models" / "vae" / "kl16_random.safetensors", 16, quant=False, seed=2)
    workflow = json.loads((EXAMPLES / "mismatch_stops.ui.json").read_text())
    for node in workflow["nodes"]:
        if node["type"] == "VAELoader":
            node["widgets_values"] = [sd.name if "SD 1.5" in node.get("title", "") else kl16.name]
    page.evaluate("() => fetch('/object_info').then(r => r.json()).then(() => window.app.refreshComboInNodes())")
    page.wait_for_timeout(2000)
    page.evaluate("(wf) => window.app.loadGraphData(wf)", workflow)
    page.wait_for_timeout(1500)
    page.evaluate(FRAME, SCALE)
    page.evaluate("() => window.app.queuePrompt(0, 1)")
    page.get_by_text("latentbridge stopped the graph", exact=False).first.wait_for(timeout=300_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(OUT / "comfyui_mismatch_error.png"))
    _small(OUT / "comfyui_mismatch_error.png")
    print(f"wrote {(OUT / 'comfyui_mismatch_error.png').relative_to(REPO)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8199)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lb-shot-") as tmp_name:
        tmp = Path(tmp_name)
        base = _base(tmp)
        env = os.environ | {"PYTHONPYCACHEPREFIX": str(tmp / "pycache"), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, str(COMFYUI / "main.py"), "--cpu", "--base-directory", str(base)]
        cmd += ["--listen", "127.0.0.1", "--port", str(args.port), "--disable-auto-launch"]
        log = open(tmp / "comfyui.log", "w")  # noqa: SIM115  (open for the server's lifetime)
        server = subprocess.Popen(cmd, cwd=COMFYUI, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{args.port}"
            _wait(url + "/object_info/LatentBridgeCheck", 240)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 2000, "height": 1100}, device_scale_factor=1)
                page.goto(url)
                page.wait_for_function("() => window.app && window.app.graph", timeout=120_000)
                page.wait_for_timeout(3000)
                page.keyboard.press("Escape")
                for ui in sorted(EXAMPLES.glob("*.ui.json")):
                    workflow = json.loads(ui.read_text())
                    page.evaluate("(wf) => window.app.loadGraphData(wf)", workflow)
                    page.wait_for_timeout(1500)
                    box = page.evaluate(FRAME, SCALE)
                    page.wait_for_timeout(1000)
                    name = ui.name.removesuffix(".ui.json")
                    page.screenshot(path=str(OUT / f"comfyui_{name}.png"), clip=box)
                    _small(OUT / f"comfyui_{name}.png")
                    print(f"wrote {OUT.relative_to(REPO) / f'comfyui_{name}.png'}")
                _error_shot(page, base)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
            shutil.copy(tmp / "comfyui.log", tmp.parent / "lb-comfyui-screenshot.log")


if __name__ == "__main__":
    main()
