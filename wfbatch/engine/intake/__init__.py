"""Intake and commands: prompts become batches one way; what users ask of a running engine."""
