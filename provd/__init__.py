"""provd: a single-binary job server for provisioner daemons."""

__version__ = "0.1.0"
