"""Impairments of the underlay path: `model` (the `Impairment` record and its
netem backend) and the userspace relay that carries it out where netem is
missing (`relay` starts it on a host, `relay_loop` is the process itself)."""
