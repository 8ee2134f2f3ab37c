"""One thin module per DVC stage (``python -m pipelines.<stage>``): read params, call ``model``/``evaluation``, write
outputs atomically with provenance. Nothing imports this package except its own stage modules and tests.
"""
