"""The ComfyUI simulator: `routes` (the raw server API), `server` (queue, history, graph checks),
`options` (its knobs and description)."""
