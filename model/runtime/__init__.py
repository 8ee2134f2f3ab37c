"""Runtime helpers with no model knowledge: atomic writes (``atomic_io``), the Ray session (``ray_session``), device
resolution (``devices``), params-section key checks (``params_check``).

May import: nothing else from flowjam. Used by every other part.
"""
