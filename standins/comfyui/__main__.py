"""``python -m backlot.standins.comfyui``."""
import sys

from backlot.standins.comfyui import main

sys.exit(main())
