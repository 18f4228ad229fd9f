"""Our own small architectures, only where diffusers lacks them: the TAESD family, VAEApprox, VAElight."""

from __future__ import annotations

from latentbridge.models.taesd import TAESD, TAESDConfig
from latentbridge.models.vaeapprox import VAEApprox
from latentbridge.models.vaelight import VAELight

__all__ = ["TAESD", "TAESDConfig", "VAEApprox", "VAELight"]
