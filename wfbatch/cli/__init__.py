"""The `wfbatch` command line."""
