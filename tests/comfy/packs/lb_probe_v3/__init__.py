"""A V3 node pack (comfy_entrypoint -> ComfyExtension) that reports progress through comfy.utils.ProgressBar."""

from comfy_api.latest import ComfyExtension, io


class LBProbeProgress(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LBProbeProgress",
            display_name="latentbridge probe: progress",
            category="latentbridge/probe",
            description="Scales a LATENT's samples by a factor, reporting `steps` progress updates.",
            inputs=[
                io.Latent.Input("samples", tooltip="any LATENT"),
                io.Float.Input("factor", default=1.0, tooltip="multiplies samples"),
                io.Int.Input("steps", default=3, min=1, max=100),
            ],
            outputs=[io.Latent.Output()],
        )

    @classmethod
    def execute(cls, samples, factor, steps) -> io.NodeOutput:
        import comfy.utils

        bar = comfy.utils.ProgressBar(steps)
        for _ in range(steps):
            bar.update(1)
        out = dict(samples)
        out["samples"] = samples["samples"] * factor
        return io.NodeOutput(out)


class ProbeExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [LBProbeProgress]


async def comfy_entrypoint() -> ProbeExtension:
    return ProbeExtension()
