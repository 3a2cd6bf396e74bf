"""pyref: wgharness's own WireGuard in Python (work in progress, issue 4).

A sans-IO core: no sockets and no clock inside; time and randomness are passed
in. So far: the primitives (`crypto`), the message codecs (`messages`) and the
Noise_IKpsk2 handshake (`noise`), checked against wireguard-go for real.
"""
