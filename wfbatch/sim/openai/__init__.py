"""The OpenAI simulator: `routes` (Images), `batch` and `batch_book` (the Batch API), `book`, `models`,
`request` (what the Images route set parses and keeps), `options` (its knobs and description)."""
