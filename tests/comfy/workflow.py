"""API-format prompts -> the frontend's UI-format workflow (schema 0.4), from ComfyUI's own node definitions.

ComfyUI stores two forms of a graph: the API ``prompt`` that runs (``{id: {class_type, inputs}}``) and the UI
``workflow`` the frontend draws and saves (nodes with positions, sockets, ``widgets_values``, and ``links`` as
``[id, origin, origin_slot, target, target_slot, type]``). :func:`api_to_ui` builds the second from the first
with each node's definition as the server's ``/object_info`` serves it (:func:`node_info`): linked inputs become
sockets, the others widget values in ``input_order`` (a widget with ``control_after_generate`` takes its "fixed"
entry after the value, an image upload its "image" entry, as the frontend saves them). Nodes are laid out left
to right by depth, stacked by their number of rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

WIDGET_TYPES = frozenset(("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"))
COLUMN, GAP = 380, 60  # canvas spacing in pixels: column width, vertical gap between nodes
SLOT = 24  # pixels per socket or widget row in the frontend
TALL = {"LoadImage": 320}  # nodes that draw a picture under their widgets


def node_info(cls: Any, display_names: Mapping[str, str], class_type: str) -> dict[str, Any]:
    """What ComfyUI's /object_info says of a node class (server.py ``node_info``): inputs, order, outputs."""
    if hasattr(cls, "GET_NODE_INFO_V1"):
        return dict(cls.GET_NODE_INFO_V1())
    inputs = cls.INPUT_TYPES()
    return {
        "input": inputs,
        "input_order": {k: list(v) for k, v in inputs.items()},
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES),
        "display_name": display_names.get(class_type, class_type),
    }


def _is_widget(spec: Any) -> bool:
    kind = spec[0] if isinstance(spec, list | tuple) and spec else spec
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _options(spec: Any) -> Mapping[str, Any]:
    return spec[1] if isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], Mapping) else {}


def _depths(prompt: Mapping[str, Any]) -> dict[str, int]:
    memo: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in memo:
            memo[node] = 0
            ups = [v[0] for v in prompt[node]["inputs"].values() if isinstance(v, list) and len(v) == 2]
            memo[node] = 1 + max((depth(str(u)) for u in ups), default=-1)
        return memo[node]

    return {n: depth(n) for n in prompt}


def api_to_ui(prompt: Mapping[str, Any], infos: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The UI workflow of an API prompt; ``infos`` maps each class_type to :func:`node_info`."""
    depths = _depths(prompt)
    tops: dict[int, int] = {}
    ids = sorted(prompt, key=lambda n: (depths[n], int(n)))
    links: list[list[Any]] = []
    nodes: dict[str, dict[str, Any]] = {}
    for order, nid in enumerate(ids):
        entry = prompt[nid]
        info = infos[entry["class_type"]]
        col = depths[nid]
        slots = len(info["input_order"].get("required", [])) + len(info["input_order"].get("optional", []))
        height = 40 + SLOT * max(slots, len(info["output"]), 1) + TALL.get(entry["class_type"], 0)
        top = tops.get(col, 40)
        tops[col] = top + height + GAP
        node: dict[str, Any] = {
            "id": int(nid),
            "type": entry["class_type"],
            "pos": [40 + col * COLUMN, top],
            "size": [320, height],
            "flags": {},
            "order": order,
            "mode": 0,
            "inputs": [],
            "outputs": [
                {"name": name, "type": kind, "links": [], "slot_index": slot}
                for slot, (name, kind) in enumerate(zip(info["output_name"], info["output"], strict=True))
            ],
            "properties": {"Node name for S&R": entry["class_type"]},
            "widgets_values": [],
        }
        title = entry.get("_meta", {}).get("title")
        if title and title != info.get("display_name"):
            node["title"] = title
        for group in ("required", "optional"):
            specs = info["input"].get(group, {})
            for name in info["input_order"].get(group, []):
                spec = specs[name]
                value = entry["inputs"].get(name)
                if isinstance(value, list) and len(value) == 2 and not isinstance(value[0], bool):
                    kind = spec[0] if isinstance(spec[0], str) else "COMBO"
                    node["inputs"].append({"name": name, "type": kind, "link": None, "_from": value})
                elif _is_widget(spec):
                    if name not in entry["inputs"]:  # the frontend fills widgets by position: keep its default
                        opts = _options(spec)
                        choices = spec[0] if isinstance(spec[0], list) else opts.get("options", [None])
                        value = opts.get("default", choices[0] if choices else None)
                    node["widgets_values"].append(value)
                    if _options(spec).get("control_after_generate"):
                        node["widgets_values"].append("fixed")
                    if _options(spec).get("image_upload"):
                        node["widgets_values"].append("image")  # LoadImage's upload button, as the frontend saves it
        nodes[nid] = node
    for nid in ids:
        for slot, socket in enumerate(nodes[nid]["inputs"]):
            src, src_slot = socket.pop("_from")
            link_id = len(links) + 1
            kind = nodes[str(src)]["outputs"][src_slot]["type"]
            links.append([link_id, int(src), src_slot, int(nid), slot, kind])
            socket["link"] = link_id
            nodes[str(src)]["outputs"][src_slot]["links"].append(link_id)
    return {
        "last_node_id": max(int(n) for n in prompt),
        "last_link_id": len(links),
        "nodes": [nodes[n] for n in ids],
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }
