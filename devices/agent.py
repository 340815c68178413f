"""The agent: probes a device, deploys files to it (sha256-checked, skipped when already there), runs the
on-device runner and cleans up after itself, over SSH or locally.

    agent = Agent("rpi4", inventory.devices["rpi4"])
    facts = agent.probe()
    out = agent.run_model({"model.so": lib, "inputs.npz": npz}, runtime="tvm", warmup=10, min_count=100)
    agent.close()

A run lives in WORKDIR/runs/<run_id>, leased for upload + run time; files are uploaded into it, verified
on the device and moved into WORKDIR/blobs/<sha256>, where later runs find them. The run directory is
removed when the run ends, and when the link failed, at the next connection (or by any later run once
its lease has expired).
"""

import json
import os
import time
import uuid
from pathlib import Path

from devices.errors import CommandError, DeviceError, IntegrityError, UnreachableError, WorkdirError
from devices.inventory import DeviceSpec
from devices.transport import open_transport
from eibutil import sha256_file

DEVICE_SCRIPT = Path(__file__).with_name("remote") / "eib_device.py"
SCRIPT_NAME = "eib_device.py"
EXIT_MISSING = 3
EXIT_INTEGRITY = 4
EXIT_WORKDIR = 5


def host_token() -> str:
    """This host's token, made once (~/.cache/eibert/host-token, 0600): the device script cleans up only the
    run folders that record it, so hosts sharing a device never remove each other's runs."""
    import secrets

    path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "eibert" / "host-token"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
        if not path.exists():
            os.replace(tmp, path)
        else:
            tmp.unlink()
    return path.read_text().strip()


class Agent:
    def __init__(self, name: str, spec: DeviceSpec, on_uploaded=None):
        self.name, self.spec = name, spec
        self.workdir = os.path.expanduser(spec.workdir) if spec.transport == "local" else spec.workdir
        self.pending_cleanup: list[str] = []
        self.token = host_token()
        self._t = None
        self._script = DEVICE_SCRIPT.read_bytes()
        self._on_uploaded = on_uploaded  # tests: called (agent, remote_path) after each upload, before verification
        self._on_staged = None  # tests: called (agent, run_dir) once every file is verified, before the run

    # connection -------------------------------------------------------------------------------
    def transport(self):
        if self._t is None:
            self._t = open_transport(self.name, self.spec)
            if self.pending_cleanup:
                ids, self.pending_cleanup = self.pending_cleanup, []
                self._device("cleanup", self.workdir, self.token, *ids, timeout_s=self.spec.connect_timeout_s + 20)
        return self._t

    def close(self) -> None:
        if self._t is not None:
            self._t.close()
            self._t = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _device(self, *args: str, timeout_s: float) -> dict:
        """Run a subcommand of the device script, sent on stdin (nothing to upload first)."""
        return self._script_run([self.spec.python, "-", *args], timeout_s=timeout_s, stdin=self._script)

    def _script_run(self, argv: list[str], **kw) -> dict:
        try:
            out = self.transport().run(argv, **kw)
        except CommandError as e:
            if e.exit_status == EXIT_WORKDIR:
                why = json.loads(e.stdout or "{}") if (e.stdout or "").startswith("{") else {}
                raise WorkdirError(self.name, f"{why.get('error', 'work dir refused')}: {why.get('workdir', self.workdir)}",
                                   exit_status=e.exit_status, stdout=e.stdout, stderr=e.stderr) from None
            raise
        return json.loads(out.decode() or "{}")

    # operations -------------------------------------------------------------------------------
    def probe(self) -> dict:
        """uname, CPU, cores, memory, governor, frequency, temperature and runtime versions."""
        t0 = time.perf_counter()
        facts = self._device("probe", timeout_s=self.spec.connect_timeout_s + 30)
        facts["probe_s"] = round(time.perf_counter() - t0, 3)
        if facts.get("machine") and facts["machine"] != self.spec.arch:
            facts["warning"] = f"inventory says arch {self.spec.arch}, device says {facts['machine']}"
        return facts

    def cleanup(self, *run_ids: str) -> list[str]:
        """Remove these runs (killing what still runs there) and every expired one; returns what is left."""
        return self._device("cleanup", self.workdir, self.token, *run_ids, timeout_s=self.spec.connect_timeout_s + 20)["left"]

    def _stage(self, run_id: str, run_dir: str, name: str, local: Path, sha: str) -> int:
        """Make `name` available in the run directory; returns the bytes uploaded (0 when reused)."""
        t = self.transport()
        try:
            self._script_run([self.spec.python, "-", "link", self.workdir, run_id, name, sha], timeout_s=60, stdin=self._script)
            return 0
        except CommandError as e:
            if e.exit_status != EXIT_MISSING:
                raise
        remote = f"{run_dir}/upload/{name}"
        t.put(local, remote, timeout_s=self.spec.upload_timeout_s)
        if self._on_uploaded:
            self._on_uploaded(self, remote)
        try:
            self._script_run([self.spec.python, "-", "adopt", self.workdir, run_id, name, sha], timeout_s=120, stdin=self._script)
        except CommandError as e:
            if e.exit_status == EXIT_INTEGRITY:
                raise IntegrityError(self.name, f"{name}: sha256 on the device differs from the host's ({sha[:12]}...): "
                                     "upload corrupted", stdout=e.stdout, stderr=e.stderr) from None
            raise
        return Path(local).stat().st_size

    def run_model(self, files: dict[str, Path], runtime: str, **opts) -> dict:
        """Deploy `files` (must include the model and inputs.npz) and run the on-device runner.

        `opts` become runner options (`model`, `inputs`, `warmup`, `min_count`, `min_duration_s`,
        `max_duration_s`, `threads`). Returns the runner's JSON plus deployment facts.
        """
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        lease_s = self.spec.upload_timeout_s + self.spec.run_timeout_s + 60
        t0 = time.perf_counter()
        staged = False
        try:
            run_dir = self._device("prepare", self.workdir, run_id, str(lease_s), self.token, timeout_s=60)["run_dir"]
            staged = True
            uploaded = 0
            shas = {name: sha256_file(Path(local)) for name, local in {SCRIPT_NAME: DEVICE_SCRIPT, **files}.items()}
            for name, local in {SCRIPT_NAME: DEVICE_SCRIPT, **files}.items():
                uploaded += self._stage(run_id, run_dir, name, Path(local), shas[name])
            deploy_s = time.perf_counter() - t0
            if self._on_staged:
                self._on_staged(self, run_dir)
            argv = [self.spec.python, f"{run_dir}/{SCRIPT_NAME}", "run", self.workdir, run_id, "--runtime", runtime]
            for k in ("model", "inputs"):  # loaded from private copies, verified again after copying
                if opts.get(k) in shas:
                    argv += [f"--{k}-sha", shas[opts[k]]]
            for k, v in opts.items():
                if v is not None:
                    argv += [f"--{k.replace('_', '-')}", str(v)]
            t1 = time.perf_counter()
            try:
                out = self.transport().run(argv, timeout_s=self.spec.run_timeout_s)
            except CommandError as e:
                if e.exit_status == EXIT_INTEGRITY:
                    raise IntegrityError(self.name, "a file changed on the device between its check and its load; refused",
                                         exit_status=e.exit_status, stdout=e.stdout, stderr=e.stderr) from None
                raise
            result = json.loads(out.decode())
            result.update(run_id=run_id, uploaded_bytes=uploaded, deploy_s=round(deploy_s, 3),
                          run_s=round(time.perf_counter() - t1, 3))
        except DeviceError as e:
            if staged:
                self._after_failure(run_id, e)
            raise
        except json.JSONDecodeError as e:
            self._after_failure(run_id, None)
            raise CommandError(self.name, f"runner printed no JSON result: {e}") from e
        self.cleanup(run_id)
        return result

    def _after_failure(self, run_id: str, err: DeviceError | None) -> None:
        """Remove the failed run now if the device still answers; otherwise at the next connection."""
        if isinstance(err, UnreachableError):
            self.close()
            self.pending_cleanup.append(run_id)
            return
        try:
            if self._t is not None and getattr(self._t, "client", None) is not None and not self._t.client.get_transport():
                self.close()  # the watchdog closed it
            self.cleanup(run_id)
        except DeviceError:
            self.close()
            self.pending_cleanup.append(run_id)
