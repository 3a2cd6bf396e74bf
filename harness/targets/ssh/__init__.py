"""Remote POSIX hosts over SSH (paramiko), one job per module:

=================  ==========================================================
`spec`             `SshSpec`: where a host is, how to trust and log in (pure)
`known_hosts`      host keys: what known_hosts records, the check on connect
`client`           `SshConduit`: one cached connection, made again once if dropped
`scripts`          the fixed shell scripts of background processes
`process`          `SshProcess`: a background process that outlives the channel
`target`           `SshTarget`: a POSIX host, its argv quoted with shlex
=================  ==========================================================
"""

from __future__ import annotations

from harness.targets.ssh.client import RemoteFileNotFoundError, SshConduit
from harness.targets.ssh.known_hosts import KnownKeys, fingerprint, known_keys
from harness.targets.ssh.process import SshProcess
from harness.targets.ssh.spec import DEFAULT_IDENTITIES, DEFAULT_KNOWN_HOSTS, HOST_KEY_POLICIES, SshSpec
from harness.targets.ssh.target import SshTarget

__all__ = [
    "DEFAULT_IDENTITIES",
    "DEFAULT_KNOWN_HOSTS",
    "HOST_KEY_POLICIES",
    "KnownKeys",
    "RemoteFileNotFoundError",
    "SshConduit",
    "SshProcess",
    "SshSpec",
    "SshTarget",
    "fingerprint",
    "known_keys",
]
