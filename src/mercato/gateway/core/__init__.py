"""The Router core: framework-free, clock-free routing of micro-batches (no web framework here)."""
