"""The challenge's contract: prompt sets (``prompts``) and the submission package and its check (``submission``).

May import: ``model.audio``, ``model.runtime``. Used by the generate, evaluate and submit stages.
"""
