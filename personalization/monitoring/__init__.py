"""Monitoring: feedback attribution, drift, explanations and audits of the served models."""
