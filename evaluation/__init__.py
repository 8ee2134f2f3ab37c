"""Evaluation: FAD/CLAP embedders, CLAP score, CCS judges, best-of-N selection, prompt sets, submission checks.

May import: ``model.audio``, ``model.text``, ``model.runtime``. Used by the generate (prompts), evaluate and submit
stages.
"""
