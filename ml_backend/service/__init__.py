"""The worker service: a loopback socket server speaking the framed-JSON protocol of :mod:`.protocol`.

``python -m ml_backend serve`` starts it (see :mod:`.server`); :mod:`ml_backend.client` talks to it.
"""
