"""The launcher: Backlot starts, stops, restarts and watches the backends the user asks it to run.

``entry`` is what a launch entry says (settings), ``presets`` fills one in from a checkout, ``process``
spawns and stops a process tree and remembers what was launched, ``console`` keeps each backend's
output, and ``supervisor.Launcher`` runs the entries' lifecycles on the event loop and publishes
``LaunchUpdated``. No Qt here: the window and the API see it through the application service.
"""
