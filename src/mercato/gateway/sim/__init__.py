"""The same Router core on a virtual clock, in front of simulated engines."""
