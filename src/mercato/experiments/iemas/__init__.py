"""The IEMAS evaluation (paper 004, §5 and Appendix B) re-run on mercato's Router core.

One module per experiment (``table1``, ``predictors``, ``truthfulness``, ``welfare``,
``clustering``, ``schemes``, ``live``), each with ``run(options, config=None) -> Section``;
:mod:`~mercato.experiments.iemas.report` runs them all and writes ``REPORT.md``.
"""
