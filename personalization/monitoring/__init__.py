"""Learning-loop monitoring: what served lists achieved (attribution) and A/B tests between model versions."""
