"""`no_leftovers` counts only what its own test made (tests/support/leftovers.py): the
rule on made-up snapshots, the harness's side of it (ids under WGH_ID_PREFIX),
and, as root, real namespaces, sockets and processes of "another lab" made
during a test that does not fail it, beside the test's own, which are seen."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
from collections.abc import Iterator

import pytest

from harness.errors import UsageError
from harness.lab.spec import load_lab
from harness.run.orchestrator import ID_PREFIX_VARIABLE, LabInstance, new_instance_id
from tests.support.leftovers import (
    SOCKET_DIR,
    TAG_LETTERS,
    Process,
    Snapshot,
    carries,
    new_tag,
    owned,
    snapshot,
)
from tests.support.paths import ROOT

TAG, OTHER = "ghjk", "zyxw"


def test_names_processes_and_namespaces_of_the_tag_and_nothing_else() -> None:
    snap = Snapshot(
        namespaces={
            f"wgh-{TAG}1a2b-a": 10,  # a lab started under the test
            f"wgh-{TAG}77ff-ssh": 11,  # a namespace the test named itself
            "wgh-1a2b-a": 20,  # a lab run by hand
            f"wgh-{OTHER}1a2b-a": 21,  # a lab of another test, beside this one
            "wgh-ssh-0a0b0c": 22,  # named as tests did before the tags
            "elsewhere": None,
        },
        sockets=frozenset({f"wgh{TAG}1a2bt0.sock", "wgh1a2bt0.sock", f"wgh{OTHER}1a2bt0.sock", "wg0.sock"}),
        processes=(
            Process(100, "wireguard-go wgh...t0", TAG, 1),  # the environment says so
            Process(101, "iperf3 -s", None, 11),  # started through sshd, in the test's namespace
            Process(102, "iperf3 -s", None, 20),
            Process(103, "wireguard-go wgh...t0", OTHER, 1),
            Process(104, "sleep 9", None, 1),
            Process(105, "sleep 9", OTHER, None),
        ),
    )
    left = owned(snap, TAG)
    assert left.namespaces == {f"wgh-{TAG}1a2b-a", f"wgh-{TAG}77ff-ssh"}
    assert left.sockets == {f"wgh{TAG}1a2bt0.sock"}
    assert {pid for pid, _ in left.processes} == {100, 101}
    assert left and not owned(snap, "qqqq")
    # Another test's view of the same machine: its own and nothing of ours.
    assert owned(snap, OTHER).namespaces == {f"wgh-{OTHER}1a2b-a"}
    assert {pid for pid, _ in owned(snap, OTHER).processes} == {103, 105}


def test_a_namespace_that_cannot_be_read_still_counts_but_holds_no_process() -> None:
    snap = Snapshot({f"wgh-{TAG}1a2b-a": None}, processes=(Process(1, "x", None, None),))
    assert owned(snap, TAG).namespaces == {f"wgh-{TAG}1a2b-a"} and not owned(snap, TAG).processes


def test_ids_carry_the_prefix_and_plain_ids_never_carry_a_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ID_PREFIX_VARIABLE, TAG)
    made = new_instance_id()
    assert made.startswith(TAG) and len(made) == 8 and carries(f"wgh-{made}-a", TAG)
    lab = LabInstance(load_lab(str(ROOT / "labs" / "local.toml")))
    assert lab.id.startswith(TAG) and carries(lab.namespace("a"), TAG) and carries(lab.tunnel_ifname(0), TAG)
    assert len(lab.link_ifname(99, "a")) <= 15  # still an interface name
    monkeypatch.delenv(ID_PREFIX_VARIABLE)
    # Hex only: a tag's first letter is not a hex digit.
    assert not any(carries(f"wgh-{new_instance_id()}-a", new_tag()) for _ in range(200))
    assert set(new_tag()) <= set(TAG_LETTERS) and not set(TAG_LETTERS) & set("0123456789abcdef")


@pytest.mark.parametrize("prefix", ["ABCD", "abcde", "a-b", "a b"])
def test_a_prefix_that_cannot_begin_an_interface_name_is_one_line(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setenv(ID_PREFIX_VARIABLE, prefix)
    with pytest.raises(UsageError) as caught:
        new_instance_id()
    assert str(caught.value) == f"{ID_PREFIX_VARIABLE}={prefix!r}: up to 4 lowercase letters or digits"


# -- as root: real namespaces, sockets and processes ------------------------------


@pytest.fixture
def elsewhere() -> Iterator[contextlib.ExitStack]:
    """Undoes what a test made as another lab would have, after `no_leftovers` has
    looked (set up before it, so torn down after it)."""
    with contextlib.ExitStack() as stack:
        yield stack


def _sleep(stack: contextlib.ExitStack, *, netns: str | None = None, tag: str | None = None) -> int:
    """A process that lives until the stack ends, with WGH_ID_PREFIX=``tag`` (or none)."""
    env = {k: v for k, v in os.environ.items() if k != ID_PREFIX_VARIABLE}
    if tag is not None:
        env[ID_PREFIX_VARIABLE] = tag
    inside = ["ip", "netns", "exec", netns] if netns else []  # ip netns exec execs: the PID is sleep's
    proc = subprocess.Popen([*inside, "sleep", "300"], env=env)
    stack.callback(proc.wait)
    stack.callback(proc.kill)
    return proc.pid


def _namespace(stack: contextlib.ExitStack, name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True)
    stack.callback(subprocess.run, ["ip", "netns", "del", name], check=False)
    return name


def _socket(stack: contextlib.ExitStack, name: str) -> str:
    SOCKET_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(SOCKET_DIR / name))
    stack.callback(listener.close)
    stack.callback((SOCKET_DIR / name).unlink, missing_ok=True)
    return name


def test_another_labs_things_made_during_the_test_are_not_its_leftovers(
    elsewhere: contextlib.ExitStack, no_leftovers: None
) -> None:
    tag = os.environ[ID_PREFIX_VARIABLE]
    by_hand, other_test = secrets.token_hex(2), new_tag() + secrets.token_hex(2)
    theirs = {_namespace(elsewhere, f"wgh-{by_hand}-a"), _namespace(elsewhere, f"wgh-{other_test}-a")}
    their_socket = _socket(elsewhere, f"wgh{by_hand}t0.sock")
    their_pids = {
        _sleep(elsewhere),
        _sleep(elsewhere, tag=other_test[:4]),
        _sleep(elsewhere, netns=f"wgh-{by_hand}-a"),
    }
    with contextlib.ExitStack() as mine:
        own_id = new_instance_id()
        ours = _namespace(mine, f"wgh-{own_id}-a")
        our_socket = _socket(mine, f"wgh{own_id}t0.sock")
        # One by its environment; one by its namespace (as a process sshd starts there would be).
        our_pids = {_sleep(mine, tag=tag), _sleep(mine, netns=ours)}
        snap = snapshot()
        assert theirs | {ours} <= set(snap.namespaces) and {their_socket, our_socket} <= snap.sockets
        assert their_pids | our_pids <= {p.pid for p in snap.processes}
        left = owned(snap, tag)
        assert left.namespaces == {ours} and left.sockets == {our_socket}
        assert {pid for pid, _ in left.processes} == our_pids
    assert not owned(snapshot(), tag)
    # On leaving, `no_leftovers` looks while "their" namespaces, socket and processes still exist.
