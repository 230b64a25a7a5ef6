"""The fal.ai queue simulator: `routes`, `book` (the queue), `options` (its knobs and description)."""
