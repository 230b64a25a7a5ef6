"""The scheduler that turns queued jobs into images under the providers' limits. It runs the same way
inside the daemon and inside the one-shot `wfbatch run`."""
