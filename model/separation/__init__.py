"""Vocal removal: demucs HTDemucs loading and chunked separation (``vocal_remover``), the resumable, Ray-parallel
work of the separate stage (``instrumental``).

May import: ``model.audio``, ``model.runtime``. Used by the separate stage.
"""
