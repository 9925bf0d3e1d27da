"""Shared test settings: hypothesis profile sized for the 2-core CI budget."""

from hypothesis import HealthCheck, settings

settings.register_profile("mercato", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mercato")
