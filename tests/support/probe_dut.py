"""A device under test for the prober's integration tests: wireguard-go or pyref in
a network namespace of its own, with prober identities as peers, probed on that
namespace's loopback with ``python -m harness.probe`` (root)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.codec import from_json
from harness.impl.base import Driver
from harness.impl.config import InterfaceConfig
from harness.impl.pyref import Pyref
from harness.impl.wireguard_go import WireguardGo
from harness.keys import KeyPair
from harness.probe import result_type
from harness.run.orchestrator import new_instance_id
from harness.targets.netns import NetnsTarget

PORT = 51870


@dataclass
class Dut:
    host: NetnsTarget
    driver: Driver
    public: str
    identities: list[str]

    def probe(self, mode: str, timeout: float = 30.0, **fields: object) -> Any:
        """The prober's result, read back as the harness reads it (`harness.codec`)."""
        job = {
            "mode": mode,
            "target": ["127.0.0.1", PORT],
            "responder_public": self.public,
            "identities": self.identities,
            **fields,
        }
        result = self.host.run(
            [sys.executable, "-m", "harness.probe"], input=json.dumps(job).encode(), timeout=timeout
        )
        assert result.ok, (result.status, result.stdout, result.stderr)
        out = from_json(result.stdout, result_type(mode))
        print(mode, {k: v for k, v in vars(out).items() if k != "rtt_ms"})
        return out


@contextlib.contextmanager
def dut(kind: str, identities: int) -> Iterator[Dut]:
    """A device under test in its own namespace, with ``identities`` prober keys as peers."""
    tag = new_instance_id()
    host = NetnsTarget("dut", f"wgh-{tag}-dut")
    keys = KeyPair.generate()
    driver: Driver | None = None
    try:
        host.setup()
        driver = (Pyref if kind == "pyref" else WireguardGo)(host, f"wgh{tag}p")
        driver.check()
        driver.up(InterfaceConfig(driver.ifname, keys.private, PORT, ("198.19.90.1/16",), 1420))
        prober = [KeyPair.generate() for _ in range(identities)]
        conf = "".join(
            f"[Peer]\nPublicKey = {k.public}\nAllowedIPs = 10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}/32\n"
            for i, k in enumerate(prober)
        )
        host.check(["wg", "addconf", driver.ifname, "/dev/stdin"], input=conf.encode())
        yield Dut(host, driver, keys.public, [k.private for k in prober])
    finally:
        if driver is not None:
            driver.down()
        host.teardown()
