"""Live faces: `runner stream` (streamer.py), its frame sources and the HTTP live view."""
