"""The shared Gradio transport (plain REST for Gradio 3, gradio_client for 4+) and the generic Gradio kind.

A Gradio app nobody claims is listed as ``gradio`` (not usable); RVC, AudioLDM and Wan2GP's web UI
are recognised by the ``gradio_match`` of their own specs.
"""
from __future__ import annotations

from backlot.services.backends.gradio.probe import KIND, fingerprint, health
from backlot.services.backends.spec import BackendSpec, Fingerprint

SPEC = BackendSpec(kind=KIND, title="Gradio app", default_ports=(*range(7860, 7871), 7897),
                   fingerprints=(Fingerprint(20, fingerprint),), health_check=health)
