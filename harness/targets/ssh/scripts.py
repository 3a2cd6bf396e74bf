"""The shell scripts an `SshTarget` runs on a POSIX host for its background
processes. Each is fixed text, run as ``sh -c SCRIPT NAME ARGS...``: its data
arrive as positional arguments ($1...), never spliced into the text, so nothing
needs quoting."""

from __future__ import annotations

# A private working directory for the target's processes; prints its path.
MKTEMP = 'mktemp -d "${TMPDIR:-/tmp}/wgh.XXXXXXXX"'

# $1 directory, $2 name, then the command. The program gets a session and
# process group of its own (setsid) so kill reaches its children too, ignores
# SIGHUP (nohup), and has nothing open on the SSH channel, so it outlives it.
# A waiter records its exit status. Prints "pid P", "started WHEN" (ps's start time,
# which tells a reused PID apart; empty where ps cannot say) and "waiter W".
START = r"""d=$1 n=$2
shift 2
(
  trap '' HUP
  if command -v setsid >/dev/null 2>&1; then
    setsid nohup "$@" </dev/null >"$d/$n.out" 2>"$d/$n.err" &
  else
    nohup "$@" </dev/null >"$d/$n.out" 2>"$d/$n.err" &
  fi
  p=$!
  echo "pid $p"
  echo "started $(ps -o lstart= -p "$p" 2>/dev/null)"
  exec >/dev/null 2>&1
  wait "$p"
  echo $? >"$d/$n.status.tmp" && mv "$d/$n.status.tmp" "$d/$n.status"
) &
echo "waiter $!"
"""

# $1 directory, $2 name, $3 pid, $4 waiter: the exit status, "running" or "lost".
POLL = r"""if [ -f "$1/$2.status" ]; then cat "$1/$2.status"
elif kill -0 "$3" 2>/dev/null || kill -0 "$4" 2>/dev/null; then echo running
elif [ -f "$1/$2.status" ]; then cat "$1/$2.status"
else echo lost; fi
"""

# $1 pid: its start time as START printed it (empty if it is gone).
STARTED = r"""ps -o lstart= -p "$1" 2>/dev/null
exit 0
"""

# $1 signal, $2 pid: the process group if it has one, else the process.
SIGNAL = r"""kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null
exit 0
"""

# A sudo host's file write: $1 path, $2 mode (octal); the data on stdin. As the SFTP
# put does: the folder made, a temporary file created empty with its mode before the
# data arrive, then renamed over the path.
PUT = r"""t="$1.wgh$$"
mkdir -p -- "$(dirname -- "$1")" && (umask 077 && : >"$t") && chmod "$2" -- "$t" && cat >"$t" &&
mv -f -- "$t" "$1" || { rm -f -- "$t"; exit 1; }"""

# A sudo host's file read: $1 path, to stdout; exit status 2 when there is no such file.
GET = r"""[ -e "$1" ] || exit 2
exec cat -- "$1" """
