"""Qt widgets: views that take data and signals and do no I/O."""
