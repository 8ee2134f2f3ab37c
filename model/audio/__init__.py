"""Audio I/O: decode, resample, write (``io``), bounded-memory streaming of long files (``stream``), Slaney mel
filterbanks (``mel``).

May import: ``model.runtime``. Used by every part that touches audio: datasets, separation, codec, flow
(text-to-music output), evaluation.
"""
