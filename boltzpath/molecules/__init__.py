"""Molecules: OpenMM replica-exchange reference data for peptide targets (SPEC §2, §3, §8)."""
