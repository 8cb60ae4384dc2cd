"""Proofs that a copy is complete and correct, and the nameless-tag repair."""
