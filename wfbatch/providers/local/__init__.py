"""The built-in offline renderer: `provider` draws the pictures, `settings` is its section."""
