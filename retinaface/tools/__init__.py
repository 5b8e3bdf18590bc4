"""Workstation only, never shipped to a Pi: weights, export, optimize, quantize, gates, bench."""
