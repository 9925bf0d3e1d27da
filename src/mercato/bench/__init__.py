"""Benchmarks behind `mercato bench ...`: each times mercato against a baseline in the same run."""
