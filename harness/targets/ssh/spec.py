"""Where an SSH host is and how to trust and log in to it: `SshSpec`, parsed from
``ssh://user@host[:port]`` with its host-key policy checked. Pure: nothing here
reads a file or opens a connection (`harness.targets.ssh.client` does)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from harness.errors import UsageError

HOST_KEY_POLICIES = ("strict", "accept-new")
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")

_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")


SUDO_VALUES = {"true": True, "false": False}


def sudo_query(query: str, bad: str) -> bool | None:
    """The URL's ``sudo=true|false`` (None: no query); UsageError for anything else."""
    if not query:
        return None
    key, sep, value = query.partition("=")
    if key != "sudo" or not sep or value not in SUDO_VALUES:
        raise UsageError(f"{bad} (the only query is sudo=true or sudo=false)")
    return SUDO_VALUES[value]


@dataclass(frozen=True)
class SshSpec:
    """Where a host is and how to trust and log in to it."""

    user: str
    host: str
    """Name or address, IPv6 without brackets."""
    port: int = 22
    key_file: str | None = None
    """Private key to log in with; None: the agent's keys and ~/.ssh/id_{ed25519,ecdsa,rsa}."""
    jump: SshSpec | None = None
    """A host to go through (its own spec, checked the same way)."""
    known_hosts: str = DEFAULT_KNOWN_HOSTS
    host_key_policy: str = "strict"
    """``strict``: the key must be in known_hosts; ``accept-new``: an unknown host's key is added."""
    connect_timeout: float = 10.0
    """Seconds for the TCP connection, the SSH handshake and authentication, each."""
    sudo: bool = False
    """Log in as ``user`` (not root) and run every command through ``sudo -n``
    (``?sudo=true`` in the URL, ``sudo = true`` in a lab's host)."""

    def __post_init__(self) -> None:
        if self.host_key_policy not in HOST_KEY_POLICIES:
            raise UsageError(
                f"host_key_policy {self.host_key_policy!r}: must be one of {', '.join(HOST_KEY_POLICIES)}"
            )
        if not 0 < self.port < 65536:
            raise UsageError(f"port {self.port}: must be between 1 and 65535")
        if not self.connect_timeout > 0:
            raise UsageError(f"connect_timeout {self.connect_timeout}: must be positive")
        if not self.user or not self.host:
            raise UsageError("an SSH host needs a user and a host")

    @classmethod
    def parse(cls, url: str, **options: Any) -> SshSpec:
        """``ssh://user@host[:port]`` (IPv6 as ``[addr]``); ``options`` set the other fields."""
        bad = f"{url!r} is not an SSH host: expected ssh://user@host[:port]"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UsageError(f"{bad} ({exc})") from None
        if parts.scheme != "ssh":
            raise UsageError(bad)
        if parts.path not in ("", "/") or parts.fragment or "#" in url:
            raise UsageError(f"{bad} (no path or fragment)")
        sudo = sudo_query(parts.query, bad)
        if sudo is not None:
            options = {**options, "sudo": sudo or options.get("sudo", False)}
        if parts.password is not None:
            raise UsageError(f"{bad} (passwords are not accepted; use a key file)")
        user = unquote(parts.username or "")
        if not user or not _USER.match(user):
            raise UsageError(f"{bad} (missing or invalid user)")
        netloc = parts.netloc.rpartition("@")[2]
        host = parts.hostname or ""
        if netloc.startswith("["):
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise UsageError(f"{bad} ({host!r} in brackets is not an IPv6 address)") from None
        elif not _HOSTNAME.match(host):
            raise UsageError(f"{bad} (invalid host {host!r}; IPv6 addresses go in brackets)")
        else:
            host = netloc.rsplit(":", 1)[0] if port is not None else netloc  # keep the case given
        if port == 0:
            raise UsageError(f"{bad} (port 0)")
        return cls(user=user, host=host, port=port if port is not None else 22, **options)

    @property
    def address(self) -> str:
        """``host:port`` (``[addr]:port`` for IPv6)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.address}" + ("?sudo=true" if self.sudo else "")

    @property
    def known_hosts_name(self) -> str:
        """The name this host has in known_hosts, as OpenSSH writes it."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"
