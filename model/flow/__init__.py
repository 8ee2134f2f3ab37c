"""Flow matching: the objective (``objective``), ODE samplers with classifier-free guidance (``sampling``), sampling
precision (``precision``), the trained-model artefact (``trained``), caption-to-audio inference
(``text_to_music``) and continuation / inpainting (``editing``).

May import: ``model.network``, ``model.data`` (standardisation), ``model.codec``, ``model.text``,
``model.audio``, ``model.runtime``. Used by training (objective, artefact export) and the generate stage.
"""
