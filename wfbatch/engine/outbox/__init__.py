"""Workers beside the job loop that tell the world: bucket uploads and notifications."""
