"""Datasets of the prepare stage: the MTG-Jamendo metadata reader (``jamendo``), captions from tags (``captions``),
the track table (``catalog``) and the built-in synthetic dataset (``synthetic`` with ``music_styles``, ``score``,
``voices``, ``render``).

May import: ``model.audio``, ``model.runtime``. Used by the prepare stage.
"""
