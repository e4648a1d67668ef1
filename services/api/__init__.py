"""The local socket API: JSON-RPC 2.0 over NDJSON on TCP, for the Blender addon, the CLI and scripts.

``protocol`` frames and validates lines and holds the error family, ``dispatch`` maps methods to
handlers, ``handlers`` are the methods, ``server`` owns connections and limits, ``token`` the secret.
"""
