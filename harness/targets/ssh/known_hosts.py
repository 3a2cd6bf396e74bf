"""Host keys: what a known_hosts file records for a host, and the check made on
the key a host presents before anything is sent to it (authentication included).

``strict`` refuses a host that is not there; ``accept-new`` adds an unknown
host's key, like OpenSSH's ``StrictHostKeyChecking=accept-new``. A key that
differs from the one on record, or one marked ``@revoked``, is always refused,
with both fingerprints. Host names match as OpenSSH matches them (``*`` and
``?`` patterns, ``!`` negation, hashed ``|1|`` names); ``@cert-authority``
lines are skipped (certificates are not supported).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from harness.errors import InfraError, UsageError
from harness.targets.ssh.spec import SshSpec


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256 fingerprint as OpenSSH prints it (``SHA256:`` + unpadded base64)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH's host patterns: ``*`` and ``?`` are the only wildcards (``[`` is literal)."""
    return re.compile(re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".") + r"\Z")


def _name_matches(name: str, patterns: Sequence[str]) -> bool:
    matched = False
    for pattern in patterns:
        if pattern.startswith("|1|"):
            with contextlib.suppress(Exception):
                if paramiko.HostKeys.hash_host(name, pattern) == pattern:
                    matched = True
            continue
        negated = pattern.startswith("!")
        if _glob(pattern.lstrip("!")).match(name.lower()):
            if negated:
                return False
            matched = True
    return matched


@dataclass
class KnownKeys:
    """The keys a known_hosts file records for one host name."""

    keys: list[paramiko.PKey] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)


def known_keys(text: str, name: str) -> KnownKeys:
    """The keys ``text`` (a known_hosts file) records for ``name`` (pure)."""
    found = KnownKeys()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            line = line.strip()
            if marker not in ("@revoked",):
                continue  # @cert-authority: certificates are not supported
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        except Exception:
            continue
        if entry is None or entry.key is None or not _name_matches(name, entry.hostnames):
            continue
        (found.revoked if marker else found.keys).append(entry.key)
    return found


def prefer_known_types(transport: paramiko.Transport, keys: Sequence[paramiko.PKey]) -> None:
    """Ask the server for the kind of key we already know (as OpenSSH does)."""
    wanted: list[str] = []
    for key in keys:
        name = key.get_name()
        wanted += ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] if name == "ssh-rsa" else [name]
    options = transport.get_security_options()
    available = list(options.key_types)
    first = [t for t in dict.fromkeys(wanted) if t in available]
    if first:
        options.key_types = first + [t for t in available if t not in first]


def load_known_keys(path: Path, name: str, where: str) -> KnownKeys:
    """The keys the known_hosts file at ``path`` records for ``name`` (none when
    there is no such file); ``where`` opens the one-line error."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        raise UsageError(f"{where}: cannot read {path}: {exc.strerror}") from None
    return known_keys(text, name)


def check_host_key(key: paramiko.PKey, known: KnownKeys, spec: SshSpec, path: Path, where: str) -> None:
    """Accept the host key ``key`` if ``known`` (read from ``path``) has it, or, under
    ``accept-new``, if it has none for the host (the key is then added to ``path``);
    else raise InfraError opening with ``where``."""
    presented = f"{key.get_name()} {fingerprint(key)}"
    if any(key == k for k in known.revoked):
        raise InfraError(f"{where}: host key {presented} is marked @revoked in {path}")
    if any(key == k for k in known.keys):
        return
    if known.keys:
        same_type = [k for k in known.keys if k.get_name() == key.get_name()] or known.keys
        expected = ", ".join(f"{k.get_name()} {fingerprint(k)}" for k in same_type)
        raise InfraError(
            f"{where}: host key CHANGED: {path} has {expected} for "
            f"{spec.known_hosts_name}, the host presented {presented}; refused "
            f"(if the change is expected, remove the old key: ssh-keygen -R '{spec.known_hosts_name}' -f {path})"
        )
    if spec.host_key_policy != "accept-new":
        raise InfraError(
            f"{where}: host key unknown: {presented} is not in {path}; refused "
            f"(check it and add it, or set host_key_policy = accept-new)"
        )
    line = paramiko.hostkeys.HostKeyEntry([spec.known_hosts_name], key).to_line()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(line)
    except OSError as exc:
        raise InfraError(f"{where}: cannot add its host key to {path}: {exc.strerror}") from None
