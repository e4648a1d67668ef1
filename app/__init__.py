"""Qt application glue (QApplication + qasync loop, lifecycle, the bridge from core events to signals)."""
