"""The Replicate predictions simulator: `routes`, `book` (predictions), `options` (knobs, description)."""
