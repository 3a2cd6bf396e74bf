"""What the parsers of tool output (`wg show IF dump`, `iperf3 --json`) share.

The parsers are pure functions of the text a tool printed. Text that does not
have the shape the parser knows raises ``ParseError``, whose message says which
line or key is wrong; any other exception escaping a parser is a bug.
"""

from __future__ import annotations


class ParseError(ValueError):
    """Tool output is not what the parser expects; the message says where (line, field or key).

    Messages never quote private or preshared keys.
    """
