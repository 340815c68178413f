"""The device side's errors: one type per kind of failure, so a hung model is told apart from a dead link.

Each carries the device name, and where a command ran its exit status, stdout and stderr (labgrid's
habit). `kind` is what result rows store; `infrastructure` says whether a sibling device could do better.
"""


class DeviceError(RuntimeError):
    kind = "failed"
    infrastructure = False

    def __init__(self, device: str, message: str, *, exit_status: int | None = None, stdout: str = "", stderr: str = ""):
        super().__init__(f"{device}: {message}")
        self.device = device
        self.message = message
        self.exit_status = exit_status
        self.stdout = stdout
        self.stderr = stderr


class UnreachableError(DeviceError):
    """No connection, or the connection died (link cut, sshd gone, device powered off)."""
    kind = "unreachable"
    infrastructure = True


class HostKeyError(DeviceError):
    """The device's host key is unknown or does not match known_hosts."""
    kind = "host-key"
    infrastructure = True


class AuthError(DeviceError):
    """The device refused our key, or the key is missing or unreadable: the device's configuration, not the
    farm's health, so it never quarantines a device nor moves the work to a sibling."""
    kind = "auth"
    infrastructure = False


class WorkdirError(DeviceError):
    """The device's work dir is unusable: not absolute, owned by another user, or writable by others."""
    kind = "workdir"


class IntegrityError(DeviceError):
    """An uploaded file's sha256 on the device differs from the host's."""
    kind = "integrity"
    infrastructure = True


class DeviceTimeoutError(DeviceError):
    """A command or an upload ran past its timeout (the link itself was alive)."""
    kind = "timeout"


class KilledError(DeviceError):
    """The remote process died from a signal (exit status -1 over SSH): OOM killer, kill -9."""
    kind = "killed"


class CommandError(DeviceError):
    """The remote command exited non-zero."""
    kind = "failed"


class MissingRuntimeError(DeviceError):
    """The device lacks the requested runtime (not in its inventory entry or not importable)."""
    kind = "missing-runtime"
