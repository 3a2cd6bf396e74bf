"""What a host runs on: bare metal, or which hypervisor (pure functions).

The facts scripts gather the evidence; this module names it. The order of
evidence, most certain first:

1. the harness booted the guest itself (`harness.targets.vm.qemu.VmTarget`): KVM or
   TCG, as QEMU was told (`vm_virtualization`);
2. ``systemd-detect-virt --vm`` (its identifiers: systemd's
   ``src/basic/virt.c`` ``virtualization_table``; ``kvm`` when the CPUID
   hypervisor vendor is KVM's, ``qemu`` for QEMU without it, i.e. TCG);
3. the firmware's system vendor and product (Linux:
   ``/sys/class/dmi/id/sys_vendor``, ``product_name``; Windows:
   ``Win32_ComputerSystem`` ``Manufacturer``, ``Model``);
4. the CPU's ``hypervisor`` flag (Linux ``/proc/cpuinfo``; Windows
   ``HypervisorPresent``, which is also true on a Hyper-V host's own
   partition, so it names no guest).

With none of them, the host is called bare metal.
"""

from __future__ import annotations

BARE_METAL = "bare metal"

SYSTEMD_NAMES = {
    "kvm": "KVM",
    "qemu": "QEMU (TCG)",
    "microsoft": "Hyper-V",
    "vmware": "VMware",
    "oracle": "VirtualBox",
    "xen": "Xen",
    "amazon": "Amazon EC2",
    "google": "Google Compute Engine",
    "bochs": "Bochs",
    "parallels": "Parallels",
    "bhyve": "bhyve",
    "apple": "Apple Virtualization",
}
"""``systemd-detect-virt --vm`` identifiers and how a summary names them."""

DMI_VENDORS = (
    ("QEMU", "", "QEMU (KVM or TCG)"),
    ("Microsoft Corporation", "Virtual Machine", "Hyper-V"),
    ("VMware", "", "VMware"),
    ("innotek GmbH", "", "VirtualBox"),
    ("Oracle Corporation", "VirtualBox", "VirtualBox"),
    ("Xen", "", "Xen"),
    ("Amazon EC2", "", "Amazon EC2"),
    ("Google", "Google Compute Engine", "Google Compute Engine"),
    ("Parallels", "", "Parallels"),
    ("BHYVE", "", "bhyve"),
)
"""(system vendor prefix, product name part or '', name): the firmware strings of
common hypervisors."""


def from_dmi(vendor: str, product: str) -> str | None:
    """The hypervisor a system vendor and product name give away, or None."""
    vendor, product = vendor.strip(), product.strip()
    for prefix, part, name in DMI_VENDORS:
        if vendor.lower().startswith(prefix.lower()) and part.lower() in product.lower():
            return name
    return None


def classify(
    *, detect_virt: str = "", vendor: str = "", product: str = "", hypervisor_flag: bool = False
) -> str:
    """The virtualization named from a POSIX host's evidence (see the module docstring)."""
    ident = detect_virt.strip().splitlines()[0].strip() if detect_virt.strip() else ""
    if ident and ident != "none":
        return SYSTEMD_NAMES.get(ident, ident)
    dmi = from_dmi(vendor, product)
    if dmi:
        return dmi
    if ident == "none":
        return BARE_METAL
    if hypervisor_flag:
        return "a hypervisor (unidentified)"
    return BARE_METAL


def classify_windows(manufacturer: str, model: str, hypervisor_present: bool) -> str:
    """The virtualization named from ``Win32_ComputerSystem``: a known firmware
    vendor names the hypervisor; ``HypervisorPresent`` alone may be a Hyper-V host
    (or a system with virtualization-based security) as well as a guest."""
    dmi = from_dmi(manufacturer, model)
    if dmi:
        return dmi
    if hypervisor_present:
        return "a hypervisor (Hyper-V host partition, VBS, or an unidentified guest)"
    return BARE_METAL


def vm_virtualization(accelerator: str, qemu_cpu: str) -> str:
    """How a guest the harness booted is named: ``TCG (QEMU, -cpu qemu64)``."""
    accel = {"kvm": "KVM", "tcg": "TCG"}.get(accelerator, accelerator or "?")
    return f"{accel} (QEMU, -cpu {qemu_cpu or '?'})"
