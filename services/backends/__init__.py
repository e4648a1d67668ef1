"""Backend adapters: one module per backend kind behind the small Protocol in ``base.py``."""
