"""Pure domain code: models, states, hashing and prompt-file parsing. Imports nothing of wfbatch."""
