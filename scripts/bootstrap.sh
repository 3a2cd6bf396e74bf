#!/usr/bin/env bash
# Installs everything wgharness needs on a fresh Debian machine, as root, and is
# cheap to run again: Debian packages (only those missing), then a virtual
# environment in .venv with the project installed in editable mode.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

# Programs the local lab drives, by Debian package; openssh-server and -client for the
# SSH target's tests (an sshd the tests start in a namespace of their own), and
# python3-cryptography for pyref installing itself on an SSH host (the tests' is this machine),
# QEMU and debootstrap for the VM guests (their image is built from Debian's packages),
# tcpdump and tshark for captures of a lab's link decrypted with pyref's key log (ethtool
# turns UDP segmentation offload off while capturing, so each datagram is a frame of its own),
# sudo for the SSH tests' host logged in to as a user with passwordless sudo (sudo = true).
apt_packages=(wireguard-go wireguard-tools iperf3 iproute2 iputils-ping procps python3-venv
              openssh-server openssh-client python3-cryptography
              qemu-system-x86 qemu-utils debootstrap e2fsprogs tcpdump tshark ethtool sudo)

if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: run as root (the lab creates network namespaces)" >&2
    exit 2
fi

missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # wireshark-common (tshark's) asks whether non-root users may capture (a setuid dumpcap):
    # answered no beforehand; the harness captures as root with tcpdump.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    # Installing openssh-server must not start an sshd on this machine: a policy-rc.d
    # that refuses every service start, for the length of the install (only if none exists).
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    # --no-install-recommends: wireguard-tools recommends a kernel image.
    status=0
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    [ "$own_policy" = 1 ] && rm -f "$policy"
    [ "$status" = 0 ] || exit "$status"
fi

py="${PYTHON:-python3}"
stamp=.venv/.wgharness-installed
if [ ! -x .venv/bin/python ]; then
    "$py" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "bootstrap: installing the Python package and its dependencies into .venv" >&2
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e '.[dev,postgresql,fleet]'; } >.venv/pip.log 2>&1; then
        tail -n 40 .venv/pip.log >&2
        echo "bootstrap: pip install failed (whole log: .venv/pip.log)" >&2
        exit 1
    fi
    touch "$stamp"
fi
