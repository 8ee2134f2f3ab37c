"""Latent data: the clip plan of the encode stage (``clips``), the Parquet shard format (``shards``), per-channel
latent statistics and the standardisation they define (``stats``).

May import: ``model.runtime``. Used by the encode work (``model.codec.encoding``), the stats stage, training
and the trained-model artefact (``model.flow.trained``).
"""
