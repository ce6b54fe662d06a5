"""Eclipse Tahu's JavaScript Sparkplug codec, run with node: an independent decoder for tests."""
