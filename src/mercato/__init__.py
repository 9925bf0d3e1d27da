"""mercato: truthful, cache-aware routing of LLM work among self-interested agents."""

__version__ = "0.1.0"
