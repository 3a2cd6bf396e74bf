"""pyref's I/O glue: the only part of pyref that touches the system.

- `tun`: the TUN device, its MTU and the netlink watcher of its link;
- `offload`: the TUN's virtio-net header (TSO reads split, GRO writes merged);
- `server`: one selector loop over the TUN, the UDP sockets and the UAPI socket,
  feeding the sans-IO `harness.pyref.device.Device`;
- `daemon`: `wgharness pyref IFNAME`, started as wireguard-go is;
- `probe`: a one-shot handshake against a peer over UDP.
"""
