"""The job loop: pick ready jobs under each provider's limits, run each one, write its image."""
