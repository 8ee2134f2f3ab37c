"""The evaluate stage's work: its settings, ``run_evaluation`` (embed, score, choose the best seeds), best-of-N
selection and the reference clip beside each prompt.

May import: ``evaluation.challenge``, ``evaluation.metrics``, ``model.audio``, ``model.text``, ``model.runtime``.
Used by the evaluate stage and the bench studies.
"""
