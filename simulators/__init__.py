"""Protocol simulators that serve one moving plant model over real TCP."""
