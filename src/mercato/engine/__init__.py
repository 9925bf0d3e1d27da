"""Simulated vLLM-like inference engine: the embedded default backend (in-process or over HTTP)."""

from mercato.engine import smollm2  # noqa: F401  (registers the calibrated smollm2-135m-cpu profile)
from mercato.engine.core import EngineCore, EngineRequest, EngineResult
from mercato.engine.profiles import PROFILES, ModelProfile, get_profile

__all__ = ["PROFILES", "EngineCore", "EngineRequest", "EngineResult", "ModelProfile", "get_profile"]
