"""Monitoring of the learning loop: feedback attribution, drift, explanations, audits."""
