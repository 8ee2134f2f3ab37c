"""Runtime helpers with no model knowledge: atomic writes (``atomic_io``), the Ray session (``ray_session``), device
resolution (``devices``), the base class of errors a user can fix (``errors``).

May import: nothing else from flowjam. Used by every other part.
"""
