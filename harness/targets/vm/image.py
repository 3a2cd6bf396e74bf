"""The guest image: Debian built with debootstrap from Debian's packages only,
cached by the content hash of its recipe.

Rules of this module:

* The cache key (`Recipe.digest`) covers everything that shapes the image: the
  suite, the package list, the files baked into the guest and `BUILD_VERSION`
  (raise it when the build steps change). The mirror is not in the key: any
  Debian mirror serves the same packages.
* A build happens in a temporary directory next to the cache entry and is
  renamed into place at the end; a failed or interrupted build leaves nothing.
  Two builds of the same recipe wait for each other (a lock file).
* Outputs: ``vmlinuz``, ``initrd.img`` (a small one: virtio and ext4 only),
  ``rootfs.img`` (raw ext4 made with ``mkfs.ext4 -d``, never modified after the
  build: each boot writes to a throwaway overlay), ``id_ed25519`` (root's key in
  the guest), ``known_hosts`` (the guest's host key, generated at build time)
  and ``manifest.json``.
* The guest configures its NICs from the kernel command line (`wgh-net`, see
  `NET_SCRIPT`), so one image serves every lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import InfraError

BUILD_VERSION = 1
"""Raise when the build steps change in a way that changes the image."""

DEFAULT_CACHE = Path("/var/cache/wgharness/images")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
DEFAULT_PACKAGES = (
    "linux-image-amd64",
    "initramfs-tools",
    "kmod",
    "udev",
    "systemd-sysv",
    "iproute2",
    "wireguard-tools",
    "iperf3",
    "openssh-server",
    "iputils-ping",
    "procps",
)

# The control NIC's address: QEMU's user network puts the guest at 10.0.2.15
# and forwards the SSH port there.
CONTROL_ADDRESS = "10.0.2.15/24"

# Files baked into the guest (path -> (mode, text)); part of the recipe's hash.
NET_SCRIPT = r"""#!/bin/sh
# wgharness: the NICs from the kernel command line.
#   wgh.ctl=MAC        the control NIC (QEMU user network): renamed ctl0, 10.0.2.15/24
#   wgh.lab=MAC        the lab NIC: renamed to wgh.labif (default lab0)
#   wgh.addr=A[,A...]  the lab NIC's addresses with prefix length
#   wgh.mtu=N          the lab NIC's MTU
#   wgh.hostname=NAME
set -u
ctl="" lab="" labif=lab0 addrs="" mtu="" name=""
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    wgh.ctl=*) ctl=${arg#*=} ;;
    wgh.lab=*) lab=${arg#*=} ;;
    wgh.labif=*) labif=${arg#*=} ;;
    wgh.addr=*) addrs=${arg#*=} ;;
    wgh.mtu=*) mtu=${arg#*=} ;;
    wgh.hostname=*) name=${arg#*=} ;;
  esac
done
[ -n "$name" ] && hostname "$name"
ip link set lo up
by_mac() {  # the interface with MAC $1, waiting up to 30 s for its driver
  i=0
  while [ $i -lt 300 ]; do
    for d in /sys/class/net/*; do
      if [ "$(cat "$d/address" 2>/dev/null)" = "$1" ]; then basename "$d"; return 0; fi
    done
    i=$((i + 1)); sleep 0.1
  done
  echo "wgh-net: no interface with MAC $1" >&2
  return 1
}
status=0
if [ -n "$ctl" ] && dev=$(by_mac "$ctl"); then
  [ "$dev" = ctl0 ] || ip link set dev "$dev" name ctl0
  ip address add CONTROL_ADDRESS dev ctl0
  ip link set dev ctl0 up
else
  status=1
fi
if [ -n "$lab" ]; then
  if dev=$(by_mac "$lab"); then
    [ "$dev" = "$labif" ] || ip link set dev "$dev" name "$labif"
    [ -n "$mtu" ] && ip link set dev "$labif" mtu "$mtu"
    for a in $(echo "$addrs" | tr ',' ' '); do
      case "$a" in
        *:*) ip address add "$a" dev "$labif" nodad ;;
        *) ip address add "$a" dev "$labif" ;;
      esac
    done
    ip link set dev "$labif" up
  else
    status=1
  fi
fi
echo "wgh-net: done (status $status)" >/dev/console
exit $status
""".replace("CONTROL_ADDRESS", CONTROL_ADDRESS)

NET_UNIT = """[Unit]
Description=wgharness: the NICs from the kernel command line
DefaultDependencies=no
After=systemd-udevd.service
Wants=systemd-udevd.service
Before=ssh.service network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/wgh-net

[Install]
WantedBy=multi-user.target
"""

SSHD_CONFIG = """# wgharness: one host key (recorded at build time), keys only.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

GUEST_FILES: dict[str, tuple[int, str]] = {
    "/usr/local/sbin/wgh-net": (0o755, NET_SCRIPT),
    "/etc/systemd/system/wgh-net.service": (0o644, NET_UNIT),
    "/etc/ssh/sshd_config.d/wgh.conf": (0o644, SSHD_CONFIG),
    "/etc/initramfs-tools/modules": (0o644, "virtio_pci\nvirtio_blk\next4\n"),
    "/etc/initramfs-tools/conf.d/wgh.conf": (0o644, "MODULES=list\nCOMPRESS=gzip\n"),
    "/etc/fstab": (0o644, "/dev/vda / ext4 rw,noatime 0 0\n"),
    "/etc/hostname": (0o644, "wgh-guest\n"),
    "/etc/hosts": (0o644, "127.0.0.1 localhost\n127.0.1.1 wgh-guest\n"),
    "/etc/modules-load.d/wgh.conf": (0o644, "wireguard\n"),
}

# Units that would only slow the boot or reach out of the lab.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "getty@tty1.service",
    "systemd-networkd-wait-online.service",
)


@dataclass(frozen=True)
class Recipe:
    """What the image is made of."""

    suite: str = DEFAULT_SUITE
    packages: tuple[str, ...] = DEFAULT_PACKAGES
    files: dict[str, tuple[int, str]] = field(default_factory=lambda: dict(GUEST_FILES))
    masked: tuple[str, ...] = MASKED_UNITS
    build_version: int = BUILD_VERSION
    mirror: str = field(default=DEFAULT_MIRROR, compare=False)
    """Where packages come from; not part of the digest."""

    def digest(self) -> str:
        """The content hash that names the image in the cache (pure)."""
        doc = {
            "suite": self.suite,
            "packages": sorted(set(self.packages)),
            "files": {path: [mode, text] for path, (mode, text) in sorted(self.files.items())},
            "masked": sorted(self.masked),
            "build_version": self.build_version,
        }
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """A built image in the cache."""

    directory: Path
    digest: str
    kernel_release: str

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    @property
    def rootfs(self) -> Path:
        return self.directory / "rootfs.img"

    @property
    def key_file(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    @classmethod
    def load(cls, directory: Path) -> Image:
        """The image in ``directory``; InfraError if it is incomplete."""
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise InfraError(f"{directory}: not a built image: {exc}") from None
        image = cls(directory, manifest["digest"], manifest["kernel_release"])
        missing = [p.name for p in (image.kernel, image.initrd, image.rootfs, image.key_file, image.known_hosts)
                   if not p.is_file()]  # fmt: skip
        if missing:
            raise InfraError(f"{directory}: incomplete image, missing {', '.join(missing)}")
        return image


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """``override``, else $WGH_IMAGE_CACHE, else /var/cache/wgharness/images."""
    chosen = override or os.environ.get("WGH_IMAGE_CACHE") or DEFAULT_CACHE
    return Path(chosen)


def ensure_image(
    recipe: Recipe | None = None,
    cache: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> Image:
    """The image for ``recipe``, from the cache or built now (minutes; needs root)."""
    recipe = recipe or Recipe()
    root = cache_dir(cache)
    digest = recipe.digest()
    final = root / digest
    if (final / "manifest.json").is_file():
        return Image.load(final)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{digest}.lock"):
        if (final / "manifest.json").is_file():  # built by someone else while we waited
            return Image.load(final)
        build_image(recipe, final, log=log)
    return Image.load(final)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(argv: list[str], what: str, timeout: float = 1800, **kwargs: object) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, text=True, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise InfraError(
            f"image build: {argv[0]} not found (apt-get install debootstrap e2fsprogs)"
        ) from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"image build: {what} did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise InfraError(f"image build: {what} failed ({done.returncode}): " + " | ".join(tail))
    return str(done.stdout)


def build_image(recipe: Recipe, final: Path, log: Callable[[str], None] | None = None) -> None:
    """Build ``recipe`` into ``final`` (which must not exist): all or nothing."""
    say = log or (lambda _msg: None)
    if os.geteuid() != 0:
        raise InfraError("image build: needs root (debootstrap, chroot)")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=final.parent))
    try:
        rootfs = work / "root"
        out = work / "image"
        out.mkdir()
        say(f"debootstrap {recipe.suite} ({len(recipe.packages)} packages) from {recipe.mirror}")
        _run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}",
             "--components=main", recipe.suite, str(rootfs), recipe.mirror],
            "debootstrap",
        )  # fmt: skip
        kernel_release = _configure(recipe, rootfs, out, say)
        shutil.copyfile(rootfs / "boot" / f"vmlinuz-{kernel_release}", out / "vmlinuz")
        shutil.copyfile(rootfs / "boot" / f"initrd.img-{kernel_release}", out / "initrd.img")
        say("mkfs.ext4 -d")
        _make_rootfs(rootfs, out / "rootfs.img")
        manifest = {
            "digest": recipe.digest(),
            "suite": recipe.suite,
            "packages": sorted(recipe.packages),
            "build_version": recipe.build_version,
            "mirror": recipe.mirror,
            "kernel_release": kernel_release,
            "build_seconds": round(time.monotonic() - started, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.rename(out, final)
        say(f"image {final} built in {manifest['build_seconds']} s")
    finally:
        _remove_tree(work)


def _remove_tree(path: Path) -> None:
    # debootstrap mounts /proc and /sys in the chroot while it works; never follow
    # a leftover mount into the machine's own file systems.
    if not path.exists():
        return
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(path) + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _chroot(rootfs: Path, argv: list[str], what: str) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    return _run(["chroot", str(rootfs), *argv], what, env=env)


def _configure(recipe: Recipe, rootfs: Path, out: Path, say: Callable[[str], None]) -> str:
    """Everything after debootstrap, inside the tree; returns the kernel release."""
    releases = sorted(p.name for p in (rootfs / "lib" / "modules").iterdir())
    if len(releases) != 1:
        raise InfraError(f"image build: expected one kernel in the image, found {releases or 'none'}")
    release = releases[0]
    for path, (mode, text) in recipe.files.items():
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    say(f"initramfs for {release} (virtio, ext4)")
    _chroot(rootfs, ["update-initramfs", "-u", "-k", release], "update-initramfs")
    _chroot(rootfs, ["systemctl", "enable", "wgh-net.service"], "systemctl enable wgh-net")
    _chroot(rootfs, ["systemctl", "mask", *recipe.masked], "systemctl mask")
    _chroot(rootfs, ["passwd", "--lock", "root"], "passwd --lock root")
    # SSH: the guest's host key and root's key, both made now; the host key is recorded.
    for old in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        old.unlink()
    host_key = rootfs / "etc" / "ssh" / "ssh_host_ed25519_key"
    _run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wgh-guest", "-f", str(host_key)], "ssh-keygen"
    )
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wgh-harness", "-f", str(out / "id_ed25519")],
         "ssh-keygen")  # fmt: skip
    ssh_dir = rootfs / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text((out / "id_ed25519.pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    kind, blob = (rootfs / "etc" / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    # The guest is only ever reached through a forwarded loopback port, whatever its number.
    (out / "known_hosts").write_text(f"[127.0.0.1]:* {kind} {blob}\n")
    # Smaller: no package caches, lists or documentation.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                 "usr/share/locale", "usr/share/info"):  # fmt: skip
        shutil.rmtree(rootfs / junk, ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc" / "machine-id").write_text("")  # a fresh one each boot
    return release


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _make_rootfs(rootfs: Path, image: Path) -> None:
    # Room for the files, their metadata and what a test writes (overlays take the writes).
    size = int(_tree_bytes(rootfs) * 1.3) + 512 * 2**20
    with open(image, "wb") as f:
        f.truncate(size)
    _run(["mkfs.ext4", "-q", "-F", "-L", "wgh-root", "-d", str(rootfs), str(image)], "mkfs.ext4 -d")
