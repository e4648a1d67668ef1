"""``python -m standins.comfyui``."""
import sys

from backlot.standins.comfyui import main

sys.exit(main())
