"""The lab file: `spec` reads and validates it into frozen dataclasses (hosts,
tunnel, links, suites). Nothing here touches a host."""
