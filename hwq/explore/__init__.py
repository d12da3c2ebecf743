"""Design-space exploration (``hwq explore``): from a model and a budget to one table.

:mod:`~hwq.explore.space` makes the points (method x bits x PE x lanes x simd),
:mod:`~hwq.explore.stages` runs and caches each stage of a point (quantize, compile, report,
a simulation check), :mod:`~hwq.explore.runner` runs the missing stages as Ray tasks,
:mod:`~hwq.explore.pareto` marks the front and picks the best point under a budget, and
:mod:`~hwq.explore.output` writes the table (Markdown, CSV, JSON) and the plots.
Ray is the ``[explore]`` extra.
"""
