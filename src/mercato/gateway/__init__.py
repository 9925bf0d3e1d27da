"""The IEMAS proxy hub: a framework-free Router core plus the live FastAPI app around it."""
