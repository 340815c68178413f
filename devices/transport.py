"""Transports: how the agent runs a command on a device and puts a file there (labgrid's `run`/`put`).

    t = open_transport("rpi4", spec)           # LocalTransport or SSHTransport
    out = t.run(["python3", "-", "probe"], stdin=script, timeout_s=30)
    t.put(Path("model.so"), "/tmp/eib/runs/r1/upload/model.so", timeout_s=120)

Every remote command is an argv list joined with shell quoting, so no name, path or value can inject
shell. SSH uses its own socket with TCP_USER_TIMEOUT and keepalives: a cut link fails in seconds, not
never (plain paramiko hangs in `Packetizer.write_all`). A watchdog closes the connection when an
upload or a command runs past its timeout. Host keys are checked against known_hosts; an unknown key
is refused unless the device opts in with `accept_unknown_host: true`.
"""

import os
import shlex
import socket
import subprocess
import threading
import time
from pathlib import Path

from devices.errors import AuthError, CommandError, DeviceError, DeviceTimeoutError, HostKeyError, KilledError, UnreachableError
from devices.inventory import DeviceSpec, looks_like_key_text


def command_line(argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    """One shell line for `argv`, every element quoted; `exec` so the process is the session's own."""
    parts = []
    if cwd:
        parts.append(f"cd {shlex.quote(cwd)} &&")
    parts.append("exec")
    if env:
        parts.append("env")
        parts.extend(shlex.quote(f"{k}={v}") for k, v in env.items())
    parts.extend(shlex.quote(a) for a in argv)
    return " ".join(parts)


def _check_exit(device: str, status: int, out: bytes, err: bytes, argv: list[str]) -> bytes:
    text_err = err.decode(errors="replace")
    if status == 0:
        return out
    if status == -1 or status > 128 and status - 128 in (9, 15, 6, 11):
        raise KilledError(device, f"{argv[0]} was killed (exit status {status})", exit_status=status,
                          stdout=out.decode(errors="replace"), stderr=text_err)
    tail = text_err.strip().splitlines()[-1:] or [""]
    raise CommandError(device, f"{argv[0]} exited {status}: {tail[0][:300]}", exit_status=status,
                       stdout=out.decode(errors="replace"), stderr=text_err)


class LocalTransport:
    """This machine, no SSH: subprocesses in their own process group, killed as a group on timeout."""

    def __init__(self, name: str, spec: DeviceSpec):
        self.name, self.spec = name, spec

    def run(self, argv: list[str], timeout_s: float, stdin: bytes | None = None, cwd: str | None = None,
            env: dict[str, str] | None = None) -> bytes:
        full_env = {**os.environ, **(env or {})}
        try:
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                 env=full_env, start_new_session=True)
        except FileNotFoundError as e:
            raise CommandError(self.name, f"{argv[0]}: not found", exit_status=127) from e
        try:
            out, err = p.communicate(stdin, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            out, err = p.communicate()
            raise DeviceTimeoutError(self.name, f"{argv[0]} ran past {timeout_s:g} s and was killed",
                                     stderr=err.decode(errors="replace")) from None
        status = p.returncode
        return _check_exit(self.name, -1 if status < 0 else status, out, err, argv)

    def put(self, local: Path, remote: str, timeout_s: float) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        with open(local, "rb") as src, open(remote, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)

    def close(self) -> None:
        pass


def _socket(host: str, port: int, connect_timeout_s: float, link_timeout_s: float) -> socket.socket:
    last: OSError | None = None
    for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        s = socket.socket(family, kind, proto)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(link_timeout_s * 1000))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 3)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
            s.settimeout(connect_timeout_s)
            s.connect(addr)
            return s
        except OSError as e:
            s.close()
            last = e
    raise last or OSError(f"no address for {host}")


class _Watchdog:
    """Closes the SSH connection when a deadline passes: the one thing that unblocks a stuck paramiko call."""

    def __init__(self, client, timeout_s: float):
        self.fired = False
        self._client = client
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True

    def _fire(self):
        self.fired = True
        self._client.close()

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()


class SSHTransport:
    def __init__(self, name: str, spec: DeviceSpec):
        import paramiko

        self.name, self.spec = name, spec
        self._paramiko = paramiko
        self.client = self._connect()

    def _key(self) -> dict:
        s = self.spec
        if s.key_env:
            path = os.environ.get(s.key_env)
            if not path:
                raise AuthError(self.name, f"key_env {s.key_env!r} is not set in the environment")
            if looks_like_key_text(path):  # the key itself: never echoed
                raise AuthError(self.name, f"key_env {s.key_env!r} holds key text; it must hold the path of a key file")
            path = os.path.expanduser(path)
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise AuthError(self.name, f"key_env {s.key_env!r}: no readable key file at {path}")
            return {"key_filename": path}
        if s.key_file:
            path = os.path.expanduser(str(s.key_file))
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise AuthError(self.name, f"key_file: no readable key file at {path}")
            return {"key_filename": path}
        return {}

    def _connect(self):
        paramiko, s = self._paramiko, self.spec
        client = paramiko.SSHClient()
        known = os.path.expanduser(str(s.known_hosts)) if s.known_hosts else os.path.expanduser("~/.ssh/known_hosts")
        if os.path.exists(known):
            client.load_host_keys(known)
        # An unknown key is refused unless the inventory opts in; the opted-in key is kept for this session only.
        client.set_missing_host_key_policy(paramiko.WarningPolicy() if s.accept_unknown_host else paramiko.RejectPolicy())
        key = self._key()  # a missing or pasted key is the device's auth error, found before any connection
        try:
            sock = _socket(s.host, s.port, s.connect_timeout_s, s.link_timeout_s)
        except OSError as e:
            raise UnreachableError(self.name, f"cannot connect to {s.host}:{s.port}: {e}") from e
        try:
            client.connect(s.host, port=s.port, username=s.user, sock=sock, timeout=s.connect_timeout_s,
                           banner_timeout=s.connect_timeout_s, auth_timeout=s.connect_timeout_s,
                           allow_agent=s.use_agent, look_for_keys=False, **key)
        except paramiko.BadHostKeyException as e:
            sock.close()
            raise HostKeyError(self.name, f"host key of {s.host} does not match {known}: possible impersonation") from e
        except paramiko.AuthenticationException as e:
            sock.close()
            raise AuthError(self.name, f"authentication as {s.user!r} failed: {e}") from e
        except paramiko.SSHException as e:
            sock.close()
            if "known_hosts" in str(e):
                raise HostKeyError(self.name, f"host key of {s.host} is not in {known}; add it (ssh-keyscan) "
                                   "or set accept_unknown_host: true for this device") from e
            raise UnreachableError(self.name, f"SSH handshake with {s.host}:{s.port} failed: {e}") from e
        except (OSError, EOFError) as e:
            sock.close()
            raise UnreachableError(self.name, f"SSH connection to {s.host}:{s.port} failed: {e}") from e
        client.get_transport().set_keepalive(2)
        return client

    def _alive(self) -> bool:
        t = self.client.get_transport()
        return t is not None and t.is_active()

    def _lost(self, e: BaseException, what: str, dog: _Watchdog, timeout_s: float) -> DeviceError:
        if dog.fired:
            return DeviceTimeoutError(self.name, f"{what} ran past {timeout_s:g} s")
        return UnreachableError(self.name, f"connection lost during {what}: {type(e).__name__}: {e}")

    def run(self, argv: list[str], timeout_s: float, stdin: bytes | None = None, cwd: str | None = None,
            env: dict[str, str] | None = None) -> bytes:
        line = command_line(argv, cwd, env)
        out, err = bytearray(), bytearray()
        with _Watchdog(self.client, timeout_s) as dog:
            try:
                if not self._alive():
                    raise EOFError("transport is not active")
                chan = self.client.get_transport().open_session(timeout=self.spec.connect_timeout_s)
                chan.settimeout(0.5)
                chan.exec_command(line)
                if stdin is not None:
                    chan.sendall(stdin)
                chan.shutdown_write()
                while True:
                    got = False
                    while chan.recv_ready():
                        out += chan.recv(65536)
                        got = True
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(65536)
                        got = True
                    if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                        break
                    if chan.closed and not got and not chan.exit_status_ready():
                        raise EOFError("channel closed without an exit status")
                    if not self._alive():
                        raise EOFError("transport died")
                    if not got:
                        time.sleep(0.01)
                status = chan.recv_exit_status()
                if status == -1:
                    # -1: sshd sent exit-signal (killed), or the connection died and paramiko closed the channel.
                    # Tell them apart by asking the connection for a new session.
                    if not self._alive():
                        raise EOFError("connection lost before an exit status arrived")
                    self.client.get_transport().open_session(timeout=min(5.0, self.spec.link_timeout_s)).close()
            except (OSError, EOFError, self._paramiko.SSHException) as e:
                raise self._lost(e, f"`{argv[0]}`", dog, timeout_s) from e
        return _check_exit(self.name, status, bytes(out), bytes(err), argv)

    def put(self, local: Path, remote: str, timeout_s: float) -> None:
        with _Watchdog(self.client, timeout_s) as dog:
            try:
                sftp = self.client.open_sftp()
                sftp.get_channel().settimeout(max(self.spec.link_timeout_s * 2, 5))
                try:
                    sftp.put(str(local), remote, confirm=True)
                finally:
                    sftp.close()
            except (OSError, EOFError, self._paramiko.SSHException) as e:
                raise self._lost(e, f"upload of {Path(local).name}", dog, timeout_s) from e

    def close(self) -> None:
        self.client.close()


class FakeTransport(LocalTransport):
    """This machine, like `local`, with the faults the inventory lists injected where they are asked for:
    the agent's failure paths run in tests without root, namespaces or sshd (the farm tests the real ones)."""

    ERRORS = {"unreachable": UnreachableError, "timeout": DeviceTimeoutError, "killed": KilledError, "auth": AuthError,
              "failed": CommandError}

    def __init__(self, name: str, spec: DeviceSpec):
        super().__init__(name, spec)
        self.left = [dict(f) for f in spec.faults]

    def _inject(self, op: str) -> None:
        for f in self.left:
            if f.get("on") == op and int(f.get("times", 1)) > 0:
                f["times"] = int(f.get("times", 1)) - 1
                raise self.ERRORS[str(f.get("error", "failed"))](self.name, f"injected {f.get('error')} at {op}", exit_status=1)

    def run(self, argv: list[str], timeout_s: float, **kw) -> bytes:
        op = argv[2] if len(argv) > 2 and argv[1] == "-" else (argv[2] if len(argv) > 2 else "run")
        self._inject(op)
        return super().run(argv, timeout_s, **kw)

    def put(self, local: Path, remote: str, timeout_s: float) -> None:
        self._inject("put")
        super().put(local, remote, timeout_s)


TRANSPORTS = {"local": LocalTransport, "ssh": SSHTransport, "fake": FakeTransport}


def open_transport(name: str, spec: DeviceSpec):
    return TRANSPORTS[spec.transport](name, spec)
