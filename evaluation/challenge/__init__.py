"""The challenge's contract: prompt sets with their ranked / out-of-distribution split (``prompts``, ``ood_split``),
concepts of free-text captions (``vocabulary``), the submission package and its check (``package``, ``parameters``,
``submission``) and the Borda ranking of experiments (``ranking``).

May import: ``model.audio``, ``model.runtime``. Used by the generate, evaluate and submit stages and
``pipelines.rank``.
"""
