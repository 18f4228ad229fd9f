"""A V1 node pack (NODE_CLASS_MAPPINGS) that probes how ComfyUI reports a node's error to the user."""


class LBProbeRaise:
    """Passes a LATENT through, or raises with the given message."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "message": ("STRING", {"default": ""})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "run"
    CATEGORY = "latentbridge/probe"

    def run(self, samples, message):
        if message:
            raise ValueError(message)
        return (samples,)


NODE_CLASS_MAPPINGS = {"LBProbeRaise": LBProbeRaise}
NODE_DISPLAY_NAME_MAPPINGS = {"LBProbeRaise": "latentbridge probe: raise"}
