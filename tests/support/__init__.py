"""What several tests share: the sshd they start, synthetic stores, pcap and pyref wiring."""
