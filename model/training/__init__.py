"""Training: params section (``config``), data loading (``data``), the loop (``loop``), optimiser and schedule
(``optimizer``), EMA (``ema``), checkpoints and resume (``checkpoints``), metrics logging (``log``), rank context
(``context``), run set-up (``setup``) and the Ray Train launcher (``ray_train``).

May import: ``model.network``, ``model.flow``, ``model.text``, ``model.data``, ``model.runtime``. Used by the train
stage only.
"""
