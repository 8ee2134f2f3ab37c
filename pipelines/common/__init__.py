"""What every stage module shares: the params loader (``params``), logging set-up (``logs``) and provenance
records (``provenance``).

May import: nothing from ``model`` or ``evaluation``. Used by every ``pipelines.<stage>`` module.
"""
