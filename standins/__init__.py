"""Stand-in backends: local servers that speak the real backends' wire protocols.

Each runs as its own process (``python -m backlot.standins KIND --port N``) so that tests and the demo
treat them exactly like the real ComfyUI, Wan2GP, RVC, AudioLDM and LLM servers they stand in for.
This package must stay importable from the Gradio-3 virtual environment: keep this file and
``_common.py`` standard-library only.
"""
