"""Paths beside the one-job loop: drafts to finals, and jobs sent through a provider's batch API."""
