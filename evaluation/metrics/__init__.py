"""The metrics: audio embedders (spectral, LAION-CLAP), FAD, the CLAP score, CCS and its judges (tagger, CLAP,
audio-language model), the offline models they train, and the audio sets they read.

May import: ``evaluation.challenge``, ``model.audio``, ``model.text``, ``model.runtime``. Used by the evaluate
stage (through ``evaluation.scoring``) and the bench studies.
"""
