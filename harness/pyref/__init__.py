"""pyref: wgharness's own WireGuard, in Python.

This package's top level is the sans-IO protocol core: no sockets, no clock,
no randomness of its own (time and random bytes are passed in), and nothing
imported from the rest of the harness (targets, implementations, the store):
`tests/test_layers.py` checks it.

- `crypto`, `messages`, `noise`: primitives, wire formats, the Noise_IKpsk2 handshake;
- `transport`, `peer`, `device`, `routing`: sessions and their timers, the replay
  window, cryptokey routing, a whole device;
- `cookie`, `ratelimiter`: the responder's gate under load;
- `uapi`: the configuration protocol (wireguard-go's), as requests in, replies out;
- `ipv4`, `keylog`: small helpers (ICMP echo, Wireshark's key log).

`io/` runs the core as an interface: TUN, UDP, the UAPI socket, the daemon.
The driver that starts it on a lab host is `harness.impl.pyref`.
"""
