"""Training: params section (``config``), data loading (``data``), the loop (``loop``), optimiser and schedule
(``optimizer``), EMA (``ema``), checkpoints and resume (``checkpoints``), metrics logging (``log``), rank context
(``context``), run set-up (``setup``), the Ray Train launcher (``ray_train``) and the paper recipe's per-device batch
(``batch_plan``).

May import: ``model.network``, ``model.flow``, ``model.text``, ``model.data``, ``model.runtime``. Used by the train
stage only.
"""
