"""The benchmark that runs on the host: `runner bench` (run.py), its result schema, telemetry."""
