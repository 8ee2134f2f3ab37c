"""flowjam's library: one subpackage per part of the pipeline.

``runtime`` and ``audio`` below everything; ``datasets`` (prepare), ``separation`` (separate), ``codec`` (+ the encode
work), ``data`` (clip plan, shards, latent stats), ``text`` and ``network`` (the velocity net), ``flow`` (objective,
samplers, inference), ``training``. Nothing here imports ``pipelines`` or ``evaluation``; docs/ARCHITECTURE.md has
the diagram.
"""
