"""Lab files: the shipped example loads, defaults are filled in, and every kind
of mistake is one LabError line naming the file and the field."""

from __future__ import annotations

import contextlib
from ipaddress import ip_address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import LabError, UsageError
from harness.impl import ImplName
from harness.keys import generate_private_key
from harness.lab.spec import ThroughputParams, load_lab, parse_lab, parse_rate
from harness.targets import HostKind
from tests.support.paths import ROOT

LOCAL = (ROOT / "labs" / "local.toml").read_text()

MINIMAL = """
[hosts.a]
target = "netns"
[hosts.b]
target = "netns"
[[links]]
a = "a"
b = "b"
a_address = "198.18.0.1/24"
b_address = "198.18.0.2/24"
[tunnel]
[[tunnel.ends]]
host = "a"
impl = "wireguard-go"
address = "198.19.0.1/24"
[[tunnel.ends]]
host = "b"
impl = "wireguard-go"
address = "198.19.0.2/24"
[suites.throughput]
"""


def test_shipped_local_lab_loads() -> None:
    lab = load_lab(ROOT / "labs" / "local.toml")
    assert lab.name == "local" and list(lab.hosts) == ["a", "b"]
    a, b = lab.tunnel.ends
    assert (a.impl, b.impl) == ("wireguard-go", "wireguard-go")
    # Endpoints derived from the shared link.
    assert a.endpoint == ip_address("198.18.0.1") and b.endpoint == ip_address("198.18.0.2")
    params = lab.suites[0].params
    assert [f.name for f in params.flows] == ["tcp-1", "tcp-4", "tcp-reverse", "tcp-bidir", "udp-300m"]
    assert params.flows[4].bitrate == "300M" and params.client == "a"
    assert len(lab.sha256) == 64 and lab.text == LOCAL


def test_defaults() -> None:
    lab = parse_lab(MINIMAL, "m.toml")
    assert lab.name == "m" and lab.description == ""
    assert lab.tunnel.mtu == 1420 and lab.tunnel.handshake_timeout == 10.0
    assert [e.listen_port for e in lab.tunnel.ends] == [51820, 51821]
    assert lab.tunnel.preshared_key is False and lab.tunnel.persistent_keepalive is None
    params = lab.suites[0].params
    assert isinstance(params, ThroughputParams)
    assert (params.duration, params.omit, params.repeat, params.port) == (10, 1, 1, 5201)
    assert [f.name for f in params.flows] == ["tcp-1"] and params.flows[0].protocol == "tcp"
    assert lab.link_between("b", "a") is lab.links[0] and lab.end_for("b").host == "b"


def test_rates() -> None:
    assert parse_rate("500mbit") == 500_000_000
    assert parse_rate("1gbit") == 10**9
    assert parse_rate("100M") == 100_000_000
    assert parse_rate("64000") == 64000
    assert parse_rate("1.5G") == 1_500_000_000
    lab = parse_lab(
        MINIMAL.replace('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nrate = "1gbit"'), "m"
    )
    assert lab.links[0].rate_bps == 10**9 and lab.links[0].rate == "1gbit"


BAD = [
    # (replace this, with that, field named, words in the reason)
    ('target = "netns"', 'target = "nets"', "hosts.a.target", "one of: netns"),
    ('target = "netns"', "target = 3", "hosts.a.target", "must be a string"),
    ('[hosts.a]\ntarget = "netns"', '[hosts.a]\ntarget = "netns"\ncolour = "red"', "hosts.a.colour", "unknown field"),
    ("[hosts.a]", "[hosts.A]", "hosts.A", "lower-case"),
    ('a = "a"', 'a = "c"', "links[0].a", "not defined"),
    ('b = "b"', 'b = "a"', "links[0].b", "two different hosts"),
    ('a_address = "198.18.0.1/24"', 'a_address = "198.18.0.300/24"', "links[0].a_address", "address with a prefix"),
    ('b_address = "198.18.0.2/24"', 'b_address = "198.18.1.2/24"', "links[0].b_address", "same network"),
    ('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.1/24"', "links[0].b_address", "differ"),
    ('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nrate = "fast"', "links[0].rate", "rate such as"),
    ('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nrate = "0mbit"', "links[0].rate", "more than 0"),
    ('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nmtu = 100', "links[0].mtu", "between 576"),
    ("[tunnel]", "[tunnel]\nmtu = true", "tunnel.mtu", "must be an integer"),
    ("[tunnel]", '[tunnel]\npreshared_key = "yes"', "tunnel.preshared_key", "true or false"),
    ("[tunnel]", "[tunnel]\nhandshake_timeout = 0", "tunnel.handshake_timeout", "greater than 0"),
    ('impl = "wireguard-go"\naddress = "198.19.0.1/24"', 'impl = "boringtun"\naddress = "198.19.0.1/24"',
     "tunnel.ends[0].impl", "one of"),
    ('address = "198.19.0.2/24"', 'address = "198.19.1.2/24"', "tunnel.ends[1].address", "same network"),
    ('address = "198.19.0.2/24"', 'address = "198.18.0.9/24"', "tunnel.ends[1].address", "overlaps links[0]"),
    ('host = "b"', 'host = "a"', "tunnel.ends[1].host", "different hosts"),
    ('address = "198.19.0.1/24"', 'address = "198.19.0.1/24"\nlisten_port = 70000', "tunnel.ends[0].listen_port", "between 1"),
    ('address = "198.19.0.1/24"', 'address = "198.19.0.1/24"\nendpoint = "nowhere"', "tunnel.ends[0].endpoint", "IP address"),
    ("[suites.throughput]", "[suites.latency]", "suites.latency", "unknown suite"),
    ("[suites.throughput]", "[suites.throughput]\nduration = 0", "suites.throughput.duration", "between 1"),
    ("[suites.throughput]", '[suites.throughput]\nclient = "c"', "suites.throughput.client", "tunnel end"),
    ("[suites.throughput]", "[suites.throughput]\nflows = []", "suites.throughput.flows", "at least one"),
    ("[suites.throughput]", '[suites.throughput]\nflows = [{name = "Bad Name"}]', "suites.throughput.flows[0].name", "lower-case"),
    ("[suites.throughput]", '[suites.throughput]\nflows = [{name = "u", protocol = "udp"}]',
     "suites.throughput.flows[0].bitrate", "required for UDP"),
    ("[suites.throughput]", '[suites.throughput]\nflows = [{name = "x", reverse = true, bidir = true}]',
     "suites.throughput.flows[0].bidir", "both reverse and bidirectional"),
    ("[suites.throughput]", '[suites.throughput]\nflows = [{name = "x"}, {name = "x"}]',
     "suites.throughput.flows[1].name", "used twice"),
    ("[suites.throughput]", '[suites.throughput]\nflows = [{name = "x", streams = 0}]',
     "suites.throughput.flows[0].streams", "between 1"),
    ("[suites.throughput]", '[suites.throughput]\nflows = [{name = "x", bitrate = "lots"}]',
     "suites.throughput.flows[0].bitrate", "rate such as"),
    ("[suites.throughput]", "", "suites", "required field is missing"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "field", "words"), BAD, ids=[b[2] + ":" + b[3] for b in BAD])
def test_bad_lab_names_file_and_field(old: str, new: str, field: str, words: str) -> None:
    assert old in MINIMAL
    with pytest.raises(LabError) as info:
        parse_lab(MINIMAL.replace(old, new, 1), "labs/x.toml")
    message = str(info.value)
    assert message.startswith(f"labs/x.toml: {field}: "), message
    assert words in message and "\n" not in message


def test_three_ends_are_refused() -> None:
    text = MINIMAL.replace(
        "[suites.throughput]",
        '[[tunnel.ends]]\nhost = "a"\nimpl = "wireguard-go"\naddress = "198.19.0.3/24"\n[suites.throughput]',
    )
    with pytest.raises(LabError, match="tunnel.ends: a tunnel has exactly two ends, got 3"):
        parse_lab(text, "x")


def test_no_shared_link_needs_explicit_endpoint() -> None:
    text = MINIMAL.replace("[hosts.b]", '[hosts.c]\ntarget = "netns"\n[hosts.b]').replace(
        'b = "b"', 'b = "c"'
    )
    with pytest.raises(LabError, match=r"tunnel.ends\[0\].endpoint: no link joins a and b"):
        parse_lab(text, "x")


def test_private_key_checked_and_never_echoed() -> None:
    key = generate_private_key()
    ok = MINIMAL.replace('address = "198.19.0.1/24"', f'address = "198.19.0.1/24"\nprivate_key = "{key}"')
    assert parse_lab(ok, "x").tunnel.ends[0].private_key == key
    assert key not in repr(parse_lab(ok, "x"))
    bad_key = key[:-8] + "AAAA"
    bad = MINIMAL.replace(
        'address = "198.19.0.1/24"', f'address = "198.19.0.1/24"\nprivate_key = "{bad_key}"'
    )
    with pytest.raises(LabError) as info:
        parse_lab(bad, "x")
    assert "tunnel.ends[0].private_key" in str(info.value) and bad_key not in str(info.value)


def test_file_problems(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="cannot read: No such file"):
        load_lab(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[hosts.a\n")
    with pytest.raises(LabError, match="invalid TOML"):
        load_lab(broken)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(LabError, match="not UTF-8"):
        load_lab(binary)


def test_overrides() -> None:
    lab = parse_lab(MINIMAL, "x")
    over = lab.with_overrides(duration=3, repeat=5)
    assert (over.suites[0].params.duration, over.suites[0].params.repeat) == (3, 5)
    assert lab.suites[0].params.duration == 10  # the original is untouched
    assert lab.with_overrides(suites=["throughput"]).suites == lab.suites
    with pytest.raises(UsageError, match="--suite: 'handshake' is not a suite"):
        lab.with_overrides(suites=["handshake"])
    with pytest.raises(UsageError, match="--repeat"):
        lab.with_overrides(repeat=0)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_lab_error(text: str) -> None:
    try:
        parse_lab(text, "fuzz.toml")
    except LabError as exc:
        assert str(exc).startswith("fuzz.toml")


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted({line.split("=")[0].strip() for line in MINIMAL.splitlines() if "=" in line})),
    st.one_of(
        st.integers(), st.booleans(), st.text(max_size=20), st.floats(allow_nan=False), st.just([1, 2])
    ),
)
def test_any_value_in_any_field_is_handled(key: str, value: object) -> None:
    import json

    rendered = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
    lines = [f"{key} = {rendered}" if line.startswith(f"{key} =") else line for line in MINIMAL.splitlines()]
    with contextlib.suppress(LabError):
        parse_lab("\n".join(lines), "fuzz.toml")


VARIANTS = """
[[variants]]
name = "old"
build = "v1"
program = "/opt/wg-v1/wireguard-go"
[[variants]]
name = "new"
build = "v2"
hosts = ["b"]
"""


def test_variants_apply_to_their_hosts() -> None:
    lab = parse_lab(MINIMAL + VARIANTS, "v.toml")
    assert [v.name for v in lab.variants] == ["old", "new"]
    old = lab.tunnel_for("old").ends
    assert [e.program for e in old] == ["/opt/wg-v1/wireguard-go"] * 2 and [e.build for e in old] == [
        "v1",
        "v1",
    ]
    new = lab.tunnel_for("new").ends
    assert [e.build for e in new] == [None, "v2"] and new[1].program is None
    assert lab.tunnel_for(None) == lab.tunnel


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (VARIANTS.split('[[variants]]\nname = "new"')[0], "variants", "at least two variants"),
        (VARIANTS.replace('build = "v2"', 'build = "v1"'), "variants[1].build", "already variant 'old'"),
        (VARIANTS.replace('name = "new"', 'name = "old"'), "variants[1].name", "used twice"),
        (VARIANTS.replace('hosts = ["b"]', 'hosts = ["z"]'), "variants[1].hosts", "not a tunnel end's host"),
        (VARIANTS.replace('hosts = ["b"]', "hosts = []"), "variants[1].hosts", "non-empty array"),
        (
            VARIANTS.replace('program = "/opt', 'colour = "red"\nprogram = "/opt'),
            "variants[0].colour",
            "unknown field",
        ),
    ],
)
def test_bad_variants(text: str, field: str, words: str) -> None:
    with pytest.raises(LabError) as info:
        parse_lab(MINIMAL + text, "v.toml")
    assert str(info.value).startswith(f"v.toml: {field}: ") and words in str(info.value)


def test_handshake_and_conformance_suites() -> None:
    lab = load_lab(ROOT / "labs" / "handshake.toml")
    hs = lab.suite("handshake")
    conf = lab.suite("conformance")
    assert hs is not None and conf is not None
    assert hs.params.dut == "b" and hs.params.load_rates == (128, 512, 2048, 8192, 16384)  # type: ignore[union-attr]
    assert conf.params.keepalive_interval == 2  # type: ignore[union-attr]
    assert conf.params.slow is False  # type: ignore[union-attr]  (the slow probes are asked for)
    slow = parse_lab(MINIMAL.replace("[suites.throughput]", "[suites.conformance]\nslow = true"), "s.toml")
    assert slow.suites[0].params.slow is True  # type: ignore[union-attr]
    # Defaults: the end under test is the second end.
    lab = parse_lab(
        MINIMAL.replace("[suites.throughput]", "[suites.handshake]\n[suites.conformance]"), "h.toml"
    )
    assert [s.params.dut for s in lab.suites] == ["b", "b"]  # type: ignore[union-attr]
    # --duration is a throughput setting; --repeat applies to every suite.
    over = lab.with_overrides(duration=3, repeat=2)
    assert [s.params.repeat for s in over.suites] == [2, 2]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('[suites.handshake]\ndut = "z"', "suites.handshake.dut", "tunnel end's host"),
        ("[suites.handshake]\nload_rates = [256, 128]", "suites.handshake.load_rates", "grow step by step"),
        ('[suites.handshake]\nload_rates = ["fast"]', "suites.handshake.load_rates", "whole numbers"),
        ("[suites.handshake]\nlatency_count = 0", "suites.handshake.latency_count", ""),
        ("[suites.conformance]\nping_size = 1400", "suites.conformance.ping_size", ""),
        ("[suites.conformance]\ncolour = 1", "suites.conformance.colour", "unknown field"),
        ('[suites.conformance]\nslow = "yes"', "suites.conformance.slow", "true or false"),
    ],
)
def test_bad_probe_suites(body: str, field: str, words: str) -> None:
    with pytest.raises(LabError) as info:
        parse_lab(MINIMAL.replace("[suites.throughput]", body), "p.toml")
    assert str(info.value).startswith(f"p.toml: {field}: ") and words in str(info.value)


REMOTE = """
[hosts.a]
target = "local"
[hosts.b]
target = "ssh"
url = "ssh://root@192.0.2.10:2222"
key = "/root/.ssh/id_ed25519"
host_key_policy = "accept-new"
[tunnel]
[[tunnel.ends]]
host = "a"
impl = "wireguard-go"
address = "198.19.0.1/24"
endpoint = "192.0.2.1"
[[tunnel.ends]]
host = "b"
impl = "wireguard-go"
address = "198.19.0.2/24"
endpoint = "192.0.2.10"
[suites.throughput]
"""


def test_local_and_ssh_hosts() -> None:
    lab = parse_lab(REMOTE, "r.toml")
    a, b = lab.hosts["a"], lab.hosts["b"]
    assert a.kind is HostKind.LOCAL and a.ssh is None
    assert b.ssh is not None and b.ssh.url == "ssh://root@192.0.2.10:2222"
    assert b.ssh.host_key_policy == "accept-new" and b.ssh.connect_timeout == 10.0 and b.ssh.jump is None


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ('url = "ssh://root@192.0.2.10:2222"', 'url = "http://192.0.2.10"', "hosts.b.url", "ssh://user@host"),
        ('url = "ssh://root@192.0.2.10:2222"', 'url = "ssh://192.0.2.10"', "hosts.b.url", "ssh://user@host"),
        ('url = "ssh://root@192.0.2.10:2222"', 'url = "ssh://r@h:99999"', "hosts.b.url", "ssh://user@host"),
        ('url = "ssh://root@192.0.2.10:2222"\n', "", "hosts.b.url", "required"),
        ('host_key_policy = "accept-new"', 'host_key_policy = "yes"', "hosts.b.host_key_policy", "strict"),
        ('target = "ssh"', 'target = "local"', "hosts.b.target", "only one host"),
        ('endpoint = "192.0.2.10"\n', "", "tunnel.ends[1].endpoint", "give the endpoint"),
    ],
)
def test_bad_remote_hosts(old: str, new: str, field: str, words: str) -> None:
    assert old in REMOTE
    with pytest.raises(LabError) as info:
        parse_lab(REMOTE.replace(old, new), "r.toml")
    assert str(info.value).startswith(f"r.toml: {field}: ") and words in str(info.value)


def test_kinds_and_impls_load_as_their_members() -> None:
    """A host's ``target`` is its `HostKind`, an end's and a variant's ``impl`` an
    `ImplName`: members whose text is the lab file's word."""
    lab = parse_lab(MINIMAL + VARIANTS.replace('hosts = ["b"]', 'hosts = ["b"]\nimpl = "pyref"'), "v.toml")
    assert [h.kind for h in lab.hosts.values()] == [HostKind.NETNS, HostKind.NETNS]
    assert all(type(h.kind) is HostKind for h in lab.hosts.values())
    assert [e.impl for e in lab.tunnel.ends] == [ImplName.WIREGUARD_GO] * 2
    assert type(lab.tunnel.ends[0].impl) is ImplName and lab.variant("new").impl is ImplName.PYREF
    assert [e.impl for e in lab.tunnel_for("new").ends] == ["wireguard-go", "pyref"]
    assert lab.hosts["a"].target_spec("wgh-0000-a").kind is HostKind.NETNS
    remote = parse_lab(REMOTE, "r.toml")
    assert [str(h.kind) for h in remote.hosts.values()] == ["local", "ssh"]


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ('target = "netns"', 'target = "nets"',
         "labs/x.toml: hosts.a.target: must be one of: netns, local, ssh, windows, vm; got 'nets'"),
        ('impl = "wireguard-go"', 'impl = "boringtun"',
         "labs/x.toml: tunnel.ends[0].impl: must be one of: wireguard-go, pyref, kernel, wireguard-nt, "
         "wireguard-go-windows; got 'boringtun'"),
        ('impl = "wireguard-go"', 'impl = "wireguard-nt"',
         "labs/x.toml: tunnel.ends[0].impl: wireguard-nt does not run on a netns host (a); "
         "use wireguard-go, pyref, kernel"),
        ("[suites.throughput]", VARIANTS.replace('hosts = ["b"]', 'hosts = ["b"]\nimpl = "boringtun"')
         + "[suites.throughput]",
         "labs/x.toml: variants[1].impl: must be one of: wireguard-go, pyref, kernel, wireguard-nt, "
         "wireguard-go-windows; got 'boringtun'"),
    ],
)  # fmt: skip
def test_an_unknown_kind_or_impl_is_one_line_naming_file_and_field(old: str, new: str, line: str) -> None:
    with pytest.raises(LabError) as info:
        parse_lab(MINIMAL.replace(old, new, 1), "labs/x.toml")
    assert str(info.value) == line


def test_links_join_namespaces_only() -> None:
    text = REMOTE.replace(
        "[tunnel]",
        '[[links]]\na = "a"\nb = "b"\na_address = "198.18.0.1/24"\nb_address = "198.18.0.2/24"\n[tunnel]',
    )
    with pytest.raises(LabError) as info:
        parse_lab(text, "r.toml")
    assert str(info.value).startswith("r.toml: links[0].a: ") and "netns" in str(info.value)


def test_vm_hosts_sit_on_one_link_to_a_namespace() -> None:
    vm = MINIMAL.replace(
        '[hosts.b]\ntarget = "netns"', '[hosts.b]\ntarget = "vm"\nmemory_mb = 512\naccel = "tcg"'
    )
    lab = parse_lab(vm, "v.toml")
    assert (
        lab.hosts["b"].vm is not None and lab.hosts["b"].vm.memory_mb == 512 and lab.hosts["b"].vm.cpus == 2
    )
    with pytest.raises(LabError, match=r"^v.toml: hosts.b.accel: "):
        parse_lab(vm.replace('accel = "tcg"', 'accel = "fast"'), "v.toml")
    lonely = vm.split("[[links]]")[0] + "[tunnel]" + vm.split("[tunnel]")[1]
    with pytest.raises(LabError, match=r"^v.toml: hosts.b: a vm is on exactly one link"):
        parse_lab(
            lonely.replace(
                'address = "198.19.0.2/24"', 'address = "198.19.0.2/24"\nendpoint = "198.18.0.2"'
            ).replace('address = "198.19.0.1/24"', 'address = "198.19.0.1/24"\nendpoint = "198.18.0.1"'),
            "v.toml",
        )


def test_vm_image_recipe_fields() -> None:
    vm = MINIMAL.replace(
        '[hosts.b]\ntarget = "netns"', '[hosts.b]\ntarget = "vm"\npackages = ["tcpdump", "ethtool"]'
    )
    spec = parse_lab(vm, "v.toml").hosts["b"].vm
    assert spec is not None and spec.suite == "bookworm" and spec.packages == ("tcpdump", "ethtool")
    with pytest.raises(LabError, match=r"^v.toml: hosts.b.packages: 'Bad Name' is not a Debian package name"):
        parse_lab(vm.replace('"ethtool"', '"Bad Name"'), "v.toml")


# -- what `lab check` passed and the run then failed on (issue 22, item 7) -------------------


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("[suites.throughput]", "[suites.throughput]\nport = 51820", "suites.throughput.port",
         "tunnel.ends[0].listen_port"),
        ("[suites.throughput]", "[suites.handshake]\nport = 51821", "suites.handshake.port",
         "tunnel.ends[1].listen_port"),
        ("[tunnel]", "[tunnel]\nhandshake_timeout = inf", "tunnel.handshake_timeout", "finite"),
        ("[tunnel]", "[tunnel]\nhandshake_timeout = 1e300", "tunnel.handshake_timeout", "at most 300"),
        ("[tunnel]", "[tunnel]\nhandshake_timeout = nan", "tunnel.handshake_timeout", "finite"),
        ('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nmtu = 1400', "links[0].mtu",
         "at least 1480"),
        ("[tunnel]", "[tunnel]\nmtu = 1480", "tunnel.mtu", "links[0] (MTU 1500"),
        ('a_address = "198.18.0.1/24"\nb_address = "198.18.0.2/24"',
         'a_address = "127.0.0.2/8"\nb_address = "127.0.0.3/8"', "links[0].a_address", "loopback"),
        ('a_address = "198.18.0.1/24"\nb_address = "198.18.0.2/24"',
         'a_address = "224.0.0.1/24"\nb_address = "224.0.0.2/24"', "links[0].a_address", "multicast"),
        ('b_address = "198.18.0.2/24"', 'b_address = "0.0.0.0/0"', "links[0].b_address", "unspecified"),
        ('address = "198.19.0.1/24"', 'address = "198.19.0.1/24"\nprogram = ""', "tunnel.ends[0].program",
         "empty"),
        ('address = "198.19.0.1/24"', 'address = "198.19.0.1/24"\nprogram = "wg\\ngo"',
         "tunnel.ends[0].program", "control character"),
        ('impl = "wireguard-go"\naddress = "198.19.0.1/24"',
         'impl = "pyref"\naddress = "198.19.0.1/24"\nprogram = "python3 -m \'harness"',
         "tunnel.ends[0].program", "quotation"),
    ],
)  # fmt: skip
def test_what_the_run_would_fail_on_is_refused_by_the_check(
    old: str, new: str, field: str, words: str
) -> None:
    assert old in MINIMAL, old
    with pytest.raises(LabError) as info:
        parse_lab(MINIMAL.replace(old, new, 1), "x.toml")
    assert str(info.value).startswith(f"x.toml: {field}: ") and words in str(info.value), str(info.value)


def test_a_link_mtu_that_fits_the_tunnel_passes() -> None:
    fits = MINIMAL.replace('b_address = "198.18.0.2/24"', 'b_address = "198.18.0.2/24"\nmtu = 1480')
    assert parse_lab(fits, "x").links[0].mtu == 1480
    v6 = fits.replace("198.18.0.1/24", "fd00::1/64").replace("198.18.0.2/24", "fd00::2/64")
    with pytest.raises(LabError, match=r"links\[0\].mtu: .*IPv6 \(80 bytes\).* at least 1500"):
        parse_lab(v6, "x")
    assert parse_lab(v6.replace("mtu = 1480", "mtu = 1500"), "x").links[0].mtu == 1500


PROGRAMS = ["/opt/my builds/wireguard-go", "/opt/wg/wg-go-v2.1", "wireguard-go-custom", "./wg"]


@pytest.mark.parametrize("program", PROGRAMS)
def test_a_custom_wireguard_go_is_one_path_in_check_and_dry_run_alike(
    program: str, tmp_path: Path, nothing_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wireguard-go program is a path, spaces and all, whatever its file is called:
    `lab check` and `run --dry-run` accept it alike, and the plan runs it as one word."""
    import shlex

    from harness.cli import main

    path = tmp_path / "custom.toml"
    path.write_text(MINIMAL.replace('impl = "wireguard-go"', f'impl = "wireguard-go"\nprogram = "{program}"'))
    assert main(["lab", "check", str(path)]) == 0
    assert main(["run", "--dry-run", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"{shlex.quote(program)} wgh" in out  # started as one argument


def test_a_pyref_program_is_a_command_line_in_check_and_run_alike() -> None:
    from harness.impl import ImplName, program_argv

    assert program_argv(ImplName.PYREF, "'/opt/my env/bin/python3' -m harness") == [
        "/opt/my env/bin/python3", "-m", "harness"
    ]  # fmt: skip
    assert program_argv(ImplName.WIREGUARD_GO, "/opt/my builds/wireguard-go") == [
        "/opt/my builds/wireguard-go"
    ]
    lab = parse_lab(
        MINIMAL.replace('impl = "wireguard-go"', 'impl = "pyref"\nprogram = "python3 -m harness"', 1), "x"
    )
    assert lab.tunnel.ends[0].program == "python3 -m harness"
    bad = MINIMAL + VARIANTS.replace('hosts = ["b"]', 'hosts = ["b"]\nimpl = "pyref"\nprogram = "a \'b"')
    with pytest.raises(LabError, match=r"^v.toml: variants\[1\].program: .*quotation"):
        parse_lab(bad, "v.toml")


def test_command_line_overrides_keep_the_files_bounds() -> None:
    lab = parse_lab(MINIMAL, "x")
    with pytest.raises(UsageError, match="--duration: must be from 1 to 3600"):
        lab.with_overrides(duration=10**9)
    with pytest.raises(UsageError, match="--repeat: must be from 1 to 1000"):
        lab.with_overrides(repeat=1001)


def test_a_redacted_key_is_no_key() -> None:
    from harness.keys import REDACTED

    text = MINIMAL.replace(
        'address = "198.19.0.1/24"', f'address = "198.19.0.1/24"\nprivate_key = "{REDACTED}"'
    )
    assert parse_lab(text, "x").tunnel.ends[0].private_key is None


def test_an_ssh_url_with_a_password_is_refused_by_the_check() -> None:
    bad = REMOTE.replace("ssh://root@192.0.2.10:2222", "ssh://root:hunter2@192.0.2.10:2222")
    with pytest.raises(LabError) as info:
        parse_lab(bad, "r.toml")
    assert str(info.value).startswith("r.toml: hosts.b.url: ") and "hunter2" not in str(info.value)


def test_a_link_frame_is_the_inner_packet_wireguard_and_ethernet() -> None:
    from harness.lab.spec import link_frame_bytes

    # 1420 + 16 (type, receiver, counter) + 16 (Poly1305 tag) + 8 UDP + 20 IPv4 + 14 Ethernet
    assert link_frame_bytes(1420) == 1494
    assert link_frame_bytes(1420, outer_ip=6) == 1514
