"""Virtual machines the harness boots itself (QEMU), running Linux kernel WireGuard.

`image` builds the guest from Debian's packages (debootstrap) into a cache keyed
by the recipe's content hash; `qemu` boots it with a throwaway overlay, a
loopback-only control NIC for SSH and a lab NIC that is a tap in a network
namespace, and hands out an `SshTarget` for the guest. See docs/vm.md.
"""
