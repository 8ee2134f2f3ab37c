"""Evaluation, split by owner so that each stage's dvc.yaml deps are whole folders:

- ``challenge``: the challenge's contract — prompt sets and the submission package (generate, evaluate, submit);
- ``metrics``: FAD/CLAP embedders, FAD, the CLAP score, CCS judges and the audio sets they read (evaluate);
- ``scoring``: the evaluate stage's work — settings, run_evaluation, best-of-N, reference matching (evaluate);
- ``report``: the listening report, page and figures (evaluate).

Layers: ``challenge`` below ``metrics`` below ``scoring``; ``report`` stands apart. Nothing here imports
``pipelines``.
"""
