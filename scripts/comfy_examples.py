"""Write the UI-format twins of the example API prompts in examples/comfyui (run inside ComfyUI's venv).

    .venv-comfy/bin/python scripts/comfy_examples.py

Starts a headless ComfyUI with the pack (tests/comfy/harness.py), reads each ``*.api.json`` and writes
``*.ui.json`` beside it: the same graph as the frontend saves it (tests/comfy/workflow.py). The tests check that the
committed UI files are what this writes.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "comfy"))

import harness  # noqa: E402
from workflow import api_to_ui, node_info  # noqa: E402

EXAMPLES = REPO / "examples" / "comfyui"


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="lb-examples-"))
    pack = base / "custom_nodes" / "latentbridge"
    pack.parent.mkdir(parents=True)
    pack.symlink_to(REPO / "custom_nodes" / "latentbridge", target_is_directory=True)
    comfy = harness.start(base, packs=[pack])
    for api in sorted(EXAMPLES.glob("*.api.json")):
        prompt = json.loads(api.read_text())
        infos = {
            e["class_type"]: node_info(
                comfy.node(e["class_type"]), comfy.nodes.NODE_DISPLAY_NAME_MAPPINGS, e["class_type"]
            )
            for e in prompt.values()
        }
        ui = api.with_name(api.name.replace(".api.json", ".ui.json"))
        ui.write_text(json.dumps(api_to_ui(prompt, infos), indent=2) + "\n")
        print(f"wrote {ui.relative_to(REPO)}")


if __name__ == "__main__":
    main()
