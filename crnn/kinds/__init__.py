"""Model kinds: the registry tying each kind's network, checkpoint and recognizer, and loading any kind by name."""
