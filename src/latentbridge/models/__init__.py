"""Our own small architectures, only where diffusers lacks them: the TAESD family, VAEApprox, VAElight, and the
bridge network that converts one VAE's latents to another's."""

from __future__ import annotations

from latentbridge.models.bridgenet import BridgeConfig, BridgeNet
from latentbridge.models.taesd import TAESD, TAESDConfig
from latentbridge.models.vaeapprox import VAEApprox
from latentbridge.models.vaelight import VAELight

__all__ = ["TAESD", "BridgeConfig", "BridgeNet", "TAESDConfig", "VAEApprox", "VAELight"]
