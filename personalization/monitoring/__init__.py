"""Monitoring: feedback attribution, drift, explanations, audits and the admin dashboard."""
