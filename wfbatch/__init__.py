"""wfbatch: push thousands of prompts through slow, rate-limited, metered image APIs."""

__version__ = "0.1.0"
