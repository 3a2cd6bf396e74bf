"""Captures of a lab's link: `tcpdump` writes a pcap on a host (stopped by its
PID), `tshark` decrypts it with a WireGuard key log. The pcap reader itself is
pure and lives with the parsers (`harness.parsers.pcap`)."""
