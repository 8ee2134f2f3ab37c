"""The listening report ``reports/index.html``: the page (``page``) and its figures (``figures``: spectrogram PNGs,
SVG line plots, DVCLive curves).

May import: ``model.audio``, ``model.runtime``. Used by the evaluate stage.
"""
