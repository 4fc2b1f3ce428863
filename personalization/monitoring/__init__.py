"""Feedback attribution, drift, explanations and data audits: how the data and the models behave in production."""
