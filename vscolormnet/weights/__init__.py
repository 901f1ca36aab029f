"""Checkpoints: locate, verify, download, the seeded parity checkpoint, sample data."""
