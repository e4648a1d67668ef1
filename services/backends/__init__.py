"""Backend kinds: one package per kind, each declaring a ``SPEC``; ``registry`` is the one list of them."""
