"""Sampling methods built from the library's pieces: the PITA ladder (``pita``)."""
