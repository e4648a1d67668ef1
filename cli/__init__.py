"""The command line: commands, printing, exit codes, signals and the demo launcher (no Qt)."""
