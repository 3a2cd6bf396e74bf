"""wgharness: performance and regression test harness for WireGuard implementations."""

__version__ = "0.1.0"
