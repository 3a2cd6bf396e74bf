"""A packet capture of one interface on a host: tcpdump in the background,
writing a classic pcap file there.

`start` returns once tcpdump says it is listening (it says so after its
socket is open and its filter is set, so nothing sent afterwards is missed);
`stop` ends it by its PID (SIGTERM: tcpdump writes what it holds and closes
the file), reads the file and removes it. Packets are written as they come
(``-U``) and handed over at once (``--immediate-mode``), so the last packets
before `stop` are in the file too. Read the bytes with `harness.parsers.pcap`.

Whole datagrams (the default): a capture sees what the stack hands the
interface, and a UDP GSO send (pyref's batches: many WireGuard messages, one
``sendmsg``) is handed over as one frame until something segments it, a
frame no dissector can split into its messages. So while capturing, UDP
segmentation offload is off on the interface (``ethtool -K IF
tx-udp-segmentation off``; the stack then segments before the capture
point), and put back as it was on `stop`. It covers what the interface
sends: a peer on the link that sends with UDP GSO itself reaches the
interface in batches too (turn it off on that side's interface as well).
"""

from __future__ import annotations

from types import TracebackType

from harness.errors import CommandError, InfraError
from harness.targets.base import Process, Target

START_TIMEOUT = 10.0
LISTENING = b"listening on "
UDP_SEGMENTATION = "tx-udp-segmentation"


def feature_state(ethtool_k: str, feature: str) -> bool | None:
    """Whether ``feature`` is on in ``ethtool -k IF`` output; None if the interface does not
    have it or cannot change it (``[fixed]``)."""
    for line in ethtool_k.splitlines():
        name, _, value = line.strip().partition(": ")
        if name == feature:
            return None if "[fixed]" in value else value.split()[:1] == ["on"]
    return None


class Capture:
    """tcpdump of ``ifname`` on ``host`` into ``path`` (a file on that host), with a
    pcap ``filter`` expression. Also a context manager: the capture runs inside."""

    def __init__(
        self, host: Target, ifname: str, path: str, filter: str = "udp", *, whole_datagrams: bool = True
    ) -> None:
        self.host = host
        self.ifname = ifname
        self.path = path
        self.filter = filter
        self.whole_datagrams = whole_datagrams
        """Turn UDP segmentation offload off on the interface while capturing (see above)."""
        self._process: Process | None = None
        self._restore_segmentation = False

    def argv(self) -> list[str]:
        return [
            self.host.tool("tcpdump"), "-i", self.ifname, "-w", self.path,
            "-U", "--immediate-mode", "-n", "-s", "0", self.filter,
        ]  # fmt: skip

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self) -> None:
        """Start tcpdump and return once it captures; `InfraError` if it cannot."""
        if self._process is not None:
            raise RuntimeError("capture already started")
        if self.whole_datagrams:
            self._restore_segmentation = self._segmentation_off()
        try:
            process = self.host.start(self.argv())
        except BaseException:
            self._discard()
            raise
        self._process = process
        try:
            process.wait_ready(
                lambda: LISTENING in process.output()[1],
                START_TIMEOUT,
                f"tcpdump on {self.ifname} to listen",
                interval=0.01,
            )
        except BaseException:
            self._discard()
            raise

    def stop(self) -> bytes:
        """Stop tcpdump by its PID, and return the pcap file's bytes (the file is removed)."""
        if self._process is None:
            raise RuntimeError("capture not started")
        self._process.kill()
        try:
            return self.host.get(self.path)
        except FileNotFoundError:
            raise InfraError(f"{self.host.name}: tcpdump on {self.ifname} left no file {self.path}") from None
        finally:
            self._discard()

    def _segmentation_off(self) -> bool:
        """Turn UDP segmentation offload off; whether it was on (to put back)."""
        ethtool = self.host.tool("ethtool")
        argv = [ethtool, "-k", self.ifname]
        shown = self.host.run(argv, timeout=30)
        if shown.status == 127:
            raise InfraError(
                f"{self.host.name}: {ethtool} is not installed (Debian: ethtool); it turns UDP "
                "segmentation offload off so the capture holds whole datagrams (or whole_datagrams=False)"
            )
        if not shown.ok:
            raise CommandError(self.host.name, argv, shown.status, shown.stderr)
        if not feature_state(shown.stdout, UDP_SEGMENTATION):
            return False
        self.host.check([ethtool, "-K", self.ifname, UDP_SEGMENTATION, "off"], timeout=30)
        return True

    def _discard(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process = None
        if self._restore_segmentation:
            self._restore_segmentation = False
            # Not checked: the interface may be gone with its lab by now.
            self.host.run([self.host.tool("ethtool"), "-K", self.ifname, UDP_SEGMENTATION, "on"], timeout=30)
        self.host.run(["rm", "-f", self.path])

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._discard()
