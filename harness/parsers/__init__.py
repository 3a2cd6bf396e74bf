"""Parsers of what tools print: `iperf` (iperf3's command lines and its
``--json``), `wgdump` (``wg show IF dump``), `facts` (the POSIX facts script and
the `HostFacts` record), `windows` (PowerShell, ``wireguard /dumplog``, the
Windows facts script). This module holds what they share.

The parsers are pure functions of the text a tool printed. Text that does not
have the shape the parser knows raises ``ParseError``, whose message says which
line or key is wrong; any other exception escaping a parser is a bug.
"""

from __future__ import annotations


class ParseError(ValueError):
    """Tool output is not what the parser expects; the message says where (line, field or key).

    Messages never quote private or preshared keys.
    """
