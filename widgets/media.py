"""Video and audio players for the output viewer: PyAV decodes in worker threads, Qt draws and plays the sound.

The viewer imports the players from here; each lives in its own module (video_player, audio_player) with what
they share in playback.
"""
from backlot.widgets.audio_player import AudioPlayer
from backlot.widgets.playback import fit_rect
from backlot.widgets.video_player import VideoPlayer

__all__ = ["AudioPlayer", "VideoPlayer", "fit_rect"]
