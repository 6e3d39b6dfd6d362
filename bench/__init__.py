"""The Presence benchmark: load generator, bare Socket.IO floor, report.

Run it with ``scripts/bench`` (see ``python -m bench --help``).
"""
