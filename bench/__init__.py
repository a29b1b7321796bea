"""``make bench``: callbackhub measured against this machine's own limits, in one run.

``python -m bench.run`` is the entry point; every other module is one process or one concern
of it (the load generators, the partner's receiver, the bare handler, the database set-up).
"""
