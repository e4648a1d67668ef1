"""``python -m standins.comfyui``."""
import sys

from standins.comfyui import main

sys.exit(main())
