"""The Stability AI simulator: `routes` (v2beta, synchronous), `options` (its knobs and description)."""
