"""The ComfyUI node classes the graph tracer knows: what each does to a latent, and the names of its inputs.

Every class name, input name and output list below was read in ComfyUI 0.8.0's source (commit 3cd7b32, the
file named in ``file``) or, for the GGUF loaders, in city96/ComfyUI-GGUF ``nodes.py``; tests/test_provenance.py
checks the ComfyUI ones against that source tree when it is present. ``Reroute`` and ``PrimitiveNode`` are not
backend nodes: they exist only in the frontend's saved workflow (Comfy-Org/ComfyUI_frontend), never in the
API-format ``prompt``.

``widgets`` is the order of a node's widget values in a UI workflow's ``widgets_values`` (the node's widget
inputs in INPUT_TYPES order; only the leading ones the tracer reads are listed).
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES_OF_NODES = (
    "vae_loader",  # VAE output named by file_input
    "checkpoint_loader",  # MODEL / VAE outputs from one checkpoint file
    "model_loader",  # MODEL output only (UNet/DiT files)
    "text_encoder_loader",  # CLIP output
    "sampler",  # LATENT out of latent_inputs and the model
    "guider",  # GUIDER out of model_input
    "encoder",  # LATENT out of pixels and vae_input
    "decoder",  # IMAGE out of latent_inputs and vae_input
    "latent_sink",  # writes its latent_inputs to a file
    "image_sink",  # writes its image_inputs to a file
    "latent_origin",  # makes a latent without a VAE (empty latents) or loads one from a file
    "image_origin",  # loads an image from a file
    "latent_op",  # LATENT out of latent_inputs
    "image_op",  # IMAGE out of image_inputs
    "primitive",  # a value (string/int) for a linked widget
)


@dataclass(frozen=True, slots=True)
class NodeKind:
    """What one ComfyUI node class does, as far as tracing a latent is concerned.

    Attributes:
        cls: the class name (``class_type`` in the API prompt, ``type`` in the UI workflow).
        file: where ComfyUI (or the pack) defines it.
        role: one of :data:`ROLES_OF_NODES`.
        outputs: its output types in slot order (RETURN_TYPES).
        file_inputs: the inputs that name model files ("vae_name", "ckpt_name", "unet_name", "clip_name1", …).
        widgets: the leading widget names, in ``widgets_values`` order.
        latent_inputs: inputs that carry a LATENT in.
        image_inputs: inputs that carry an IMAGE in.
        vae_input: the input that carries the VAE ("vae"), "" when none.
        model_input: the input that carries the MODEL ("model"), "" when none.
        guider_input: the input that carries a GUIDER (SamplerCustomAdvanced), "" when none.
        latent_slot: for an encoder whose outputs mix types, the slot of its LATENT (InpaintModelConditioning: 2).
    """

    cls: str
    file: str
    role: str
    outputs: tuple[str, ...] = ()
    file_inputs: tuple[str, ...] = ()
    widgets: tuple[str, ...] = ()
    latent_inputs: tuple[str, ...] = ()
    image_inputs: tuple[str, ...] = ()
    vae_input: str = ""
    model_input: str = ""
    guider_input: str = ""
    latent_slot: int = 0

    def __post_init__(self) -> None:
        if self.role not in ROLES_OF_NODES:
            raise ValueError(f"{self.cls}: unknown node role {self.role!r}")

    def slot_type(self, slot: int) -> str:
        """The type of output ``slot`` ("" when unknown)."""
        return self.outputs[slot] if 0 <= slot < len(self.outputs) else ""


_N = "nodes.py"
_SAMPLER = "comfy_extras/nodes_custom_sampler.py"
_LATENT = "comfy_extras/nodes_latent.py"
_GGUF = "city96/ComfyUI-GGUF nodes.py"
_PACK = "src/latentbridge/comfy/_nodes.py"  # latentbridge's own ComfyUI node pack (in this repository)
_CKPT = ("MODEL", "CLIP", "VAE")

NODE_KINDS: tuple[NodeKind, ...] = (
    # loaders
    NodeKind("VAELoader", _N, "vae_loader", ("VAE",), ("vae_name",), ("vae_name",)),
    NodeKind("CheckpointLoaderSimple", _N, "checkpoint_loader", _CKPT, ("ckpt_name",), ("ckpt_name",)),
    NodeKind("CheckpointLoader", _N, "checkpoint_loader", _CKPT, ("ckpt_name",), ("config_name", "ckpt_name")),
    NodeKind(
        "unCLIPCheckpointLoader", _N, "checkpoint_loader", (*_CKPT, "CLIP_VISION"), ("ckpt_name",), ("ckpt_name",)
    ),
    NodeKind(
        "ImageOnlyCheckpointLoader",
        "comfy_extras/nodes_video_model.py",
        "checkpoint_loader",
        ("MODEL", "CLIP_VISION", "VAE"),
        ("ckpt_name",),
        ("ckpt_name",),
    ),
    NodeKind("DiffusersLoader", _N, "checkpoint_loader", _CKPT, ("model_path",), ("model_path",)),
    NodeKind("UNETLoader", _N, "model_loader", ("MODEL",), ("unet_name",), ("unet_name", "weight_dtype")),
    NodeKind("UnetLoaderGGUF", _GGUF, "model_loader", ("MODEL",), ("unet_name",), ("unet_name",)),
    NodeKind(
        "UnetLoaderGGUFAdvanced",
        _GGUF,
        "model_loader",
        ("MODEL",),
        ("unet_name",),
        ("unet_name", "dequant_dtype", "patch_dtype", "patch_on_device"),
    ),
    NodeKind("CLIPLoader", _N, "text_encoder_loader", ("CLIP",), ("clip_name",), ("clip_name", "type", "device")),
    NodeKind(
        "DualCLIPLoader",
        _N,
        "text_encoder_loader",
        ("CLIP",),
        ("clip_name1", "clip_name2"),
        ("clip_name1", "clip_name2", "type", "device"),
    ),
    NodeKind(
        "TripleCLIPLoader",
        "comfy_extras/nodes_sd3.py",
        "text_encoder_loader",
        ("CLIP",),
        ("clip_name1", "clip_name2", "clip_name3"),
        ("clip_name1", "clip_name2", "clip_name3"),
    ),
    NodeKind(
        "QuadrupleCLIPLoader",
        "comfy_extras/nodes_hidream.py",
        "text_encoder_loader",
        ("CLIP",),
        ("clip_name1", "clip_name2", "clip_name3", "clip_name4"),
        ("clip_name1", "clip_name2", "clip_name3", "clip_name4"),
    ),
    NodeKind("CLIPLoaderGGUF", _GGUF, "text_encoder_loader", ("CLIP",), ("clip_name",), ("clip_name", "type")),
    NodeKind(
        "DualCLIPLoaderGGUF",
        _GGUF,
        "text_encoder_loader",
        ("CLIP",),
        ("clip_name1", "clip_name2"),
        ("clip_name1", "clip_name2", "type"),
    ),
    NodeKind(
        "TripleCLIPLoaderGGUF",
        _GGUF,
        "text_encoder_loader",
        ("CLIP",),
        ("clip_name1", "clip_name2", "clip_name3"),
        ("clip_name1", "clip_name2", "clip_name3"),
    ),
    NodeKind(
        "QuadrupleCLIPLoaderGGUF",
        _GGUF,
        "text_encoder_loader",
        ("CLIP",),
        ("clip_name1", "clip_name2", "clip_name3", "clip_name4"),
        ("clip_name1", "clip_name2", "clip_name3", "clip_name4"),
    ),
    # samplers and guiders
    NodeKind("KSampler", _N, "sampler", ("LATENT",), latent_inputs=("latent_image",), model_input="model"),
    NodeKind("KSamplerAdvanced", _N, "sampler", ("LATENT",), latent_inputs=("latent_image",), model_input="model"),
    NodeKind(
        "SamplerCustom", _SAMPLER, "sampler", ("LATENT", "LATENT"), latent_inputs=("latent_image",), model_input="model"
    ),
    NodeKind(
        "SamplerCustomAdvanced",
        _SAMPLER,
        "sampler",
        ("LATENT", "LATENT"),
        latent_inputs=("latent_image",),
        guider_input="guider",
    ),
    NodeKind("BasicGuider", _SAMPLER, "guider", ("GUIDER",), model_input="model"),
    NodeKind("CFGGuider", _SAMPLER, "guider", ("GUIDER",), model_input="model"),
    NodeKind("DualCFGGuider", _SAMPLER, "guider", ("GUIDER",), model_input="model"),
    # VAE encode / decode
    NodeKind("VAEEncode", _N, "encoder", ("LATENT",), image_inputs=("pixels",), vae_input="vae"),
    NodeKind("VAEEncodeTiled", _N, "encoder", ("LATENT",), image_inputs=("pixels",), vae_input="vae"),
    NodeKind("VAEEncodeForInpaint", _N, "encoder", ("LATENT",), image_inputs=("pixels",), vae_input="vae"),
    NodeKind(
        "InpaintModelConditioning",
        _N,
        "encoder",
        ("CONDITIONING", "CONDITIONING", "LATENT"),
        image_inputs=("pixels",),
        vae_input="vae",
        latent_slot=2,
    ),
    NodeKind("VAEDecode", _N, "decoder", ("IMAGE",), latent_inputs=("samples",), vae_input="vae"),
    NodeKind("VAEDecodeTiled", _N, "decoder", ("IMAGE",), latent_inputs=("samples",), vae_input="vae"),
    # files written
    NodeKind("SaveLatent", _N, "latent_sink", widgets=("filename_prefix",), latent_inputs=("samples",)),
    NodeKind("SaveImage", _N, "image_sink", widgets=("filename_prefix",), image_inputs=("images",)),
    NodeKind("PreviewImage", _N, "image_sink", image_inputs=("images",)),
    NodeKind(
        "SaveAnimatedWEBP",
        "comfy_extras/nodes_images.py",
        "image_sink",
        widgets=("filename_prefix",),
        image_inputs=("images",),
    ),
    NodeKind(
        "SaveAnimatedPNG",
        "comfy_extras/nodes_images.py",
        "image_sink",
        widgets=("filename_prefix",),
        image_inputs=("images",),
    ),
    # origins
    NodeKind("EmptyLatentImage", _N, "latent_origin", ("LATENT",), widgets=("width", "height", "batch_size")),
    NodeKind(
        "EmptySD3LatentImage",
        "comfy_extras/nodes_sd3.py",
        "latent_origin",
        ("LATENT",),
        widgets=("width", "height", "batch_size"),
    ),
    NodeKind("EmptyHunyuanLatentVideo", "comfy_extras/nodes_hunyuan.py", "latent_origin", ("LATENT",)),
    NodeKind("EmptyFlux2LatentImage", "comfy_extras/nodes_flux.py", "latent_origin", ("LATENT",)),
    NodeKind("LoadLatent", _N, "latent_origin", ("LATENT",), ("latent",), ("latent",)),
    NodeKind("LoadImage", _N, "image_origin", ("IMAGE", "MASK"), ("image",), ("image",)),
    # latent operations (LATENT in, LATENT out)
    *(
        NodeKind(cls, _N, "latent_op", ("LATENT",), latent_inputs=inputs)
        for cls, inputs in (
            ("LatentUpscale", ("samples",)),
            ("LatentUpscaleBy", ("samples",)),
            ("LatentFromBatch", ("samples",)),
            ("RepeatLatentBatch", ("samples",)),
            ("LatentRotate", ("samples",)),
            ("LatentFlip", ("samples",)),
            ("LatentComposite", ("samples_to", "samples_from")),
            ("LatentBlend", ("samples1", "samples2")),
            ("LatentCrop", ("samples",)),
            ("SetLatentNoiseMask", ("samples",)),
        )
    ),
    *(
        NodeKind(cls, _LATENT, "latent_op", ("LATENT",), latent_inputs=inputs)
        for cls, inputs in (
            ("LatentAdd", ("samples1", "samples2")),
            ("LatentSubtract", ("samples1", "samples2")),
            ("LatentMultiply", ("samples",)),
            ("LatentInterpolate", ("samples1", "samples2")),
            ("LatentConcat", ("samples1", "samples2")),
            ("LatentCut", ("samples",)),
            ("LatentBatch", ("samples1", "samples2")),
            ("LatentBatchSeedBehavior", ("samples",)),
        )
    ),
    # image operations (IMAGE in, IMAGE out)
    *(
        NodeKind(cls, _N, "image_op", ("IMAGE",), image_inputs=inputs)
        for cls, inputs in (
            ("ImageScale", ("image",)),
            ("ImageScaleBy", ("image",)),
            ("ImageInvert", ("image",)),
            ("ImageBatch", ("image1", "image2")),
        )
    ),
    NodeKind(
        "ImageUpscaleWithModel", "comfy_extras/nodes_upscale_model.py", "image_op", ("IMAGE",), image_inputs=("image",)
    ),
    # latentbridge's own node pack
    NodeKind("LatentBridgeSaveLatent", _PACK, "latent_sink", widgets=("filename_prefix",), latent_inputs=("samples",)),
    NodeKind("LatentBridgeLoadLatent", _PACK, "latent_origin", ("LATENT", "STRING"), ("latent",), ("latent",)),
    NodeKind(
        "LatentBridgeSafeDecode", _PACK, "decoder", ("IMAGE", "STRING"), latent_inputs=("samples",), vae_input="vae"
    ),
    # Transfer Latent re-encodes with to_vae: the latent it outputs was encoded by that VAE
    NodeKind("LatentBridgeTransfer", _PACK, "encoder", ("LATENT", "STRING"), vae_input="to_vae"),
    *(
        NodeKind(cls, _PACK, "latent_op", outputs, latent_inputs=("samples",))
        for cls, outputs in (
            ("LatentBridgeCheck", ("LATENT", "STRING", "STRING")),
            ("LatentBridgeIdentify", ("LATENT", "STRING", "STRING", "STRING")),
            ("LatentBridgeInspect", ("LATENT", "STRING")),
        )
    ),
    # values for linked widgets
    *(
        NodeKind(cls, "comfy_extras/nodes_primitive.py", "primitive", (kind,), widgets=("value",))
        for cls, kind in (
            ("PrimitiveString", "STRING"),
            ("PrimitiveStringMultiline", "STRING"),
            ("PrimitiveInt", "INT"),
        )
    ),
)

KINDS_BY_CLASS: dict[str, NodeKind] = {k.cls: k for k in NODE_KINDS}
if len(KINDS_BY_CLASS) != len(NODE_KINDS):  # pragma: no cover - guards the table above
    raise ValueError("duplicate node class in NODE_KINDS")

# Inputs that carry a latent or an image into nodes the table does not know (API prompts carry no types): the names
# ComfyUI's own nodes use.
LATENT_INPUT_NAMES = frozenset(
    ("samples", "samples1", "samples2", "samples_to", "samples_from", "latent_image", "latent")
)
IMAGE_INPUT_NAMES = frozenset(("image", "images", "pixels", "image1", "image2"))
FRONTEND_REROUTE = "Reroute"  # frontend-only pass-through node (one input, one output)
FRONTEND_PRIMITIVE = "PrimitiveNode"  # frontend-only node holding a widget value for linked inputs
TAESD_NAMES = frozenset(("taesd", "taesdxl", "taesd3", "taef1"))  # VAELoader's built-in TAESD choices (nodes.py)
MODE_NEVER, MODE_BYPASS = 2, 4  # litegraph node modes: 0 always, 2 never (muted), 4 bypass
