"""What every stage module shares: the params loader and its schema (``params``, ``schema``), entry-point error
handling (``cli``), logging set-up (``logs``) and provenance records (``provenance``).

May import: ``model.runtime`` only (every stage lists it among its deps). Used by every ``pipelines.<stage>`` module.
"""
