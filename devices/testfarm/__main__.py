"""Start or stop a test farm from the shell (root), for demos and reports on this machine.

    python -m devices.testfarm up --x86 2 --arm 1 --inventory inventory.farm.yaml
    python -m devices.testfarm down          # every farm started this way

`up` returns once every sshd answers; the devices keep running until `down`.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from devices.testfarm.farm import Farm
from devices.testfarm.hostenv import FarmError
from devices.testfarm.rootfs import STATE
from eibutil.logs import configure


def up(args) -> int:
    farm = Farm()
    try:
        for i in range(args.x86):
            farm.add(f"farm-x86-{i + 1}")
        for i in range(args.arm):
            farm.add(f"farm-arm-{i + 1}", arch="aarch64")
    except FarmError:
        farm.close()
        raise
    inv = farm.write_inventory(args.inventory)
    state = {"base": str(farm.base), "devices": {n: {"netns": d.netns, "veth": d.veth} for n, d in farm.devices.items()}}
    (farm.base / "state.json").write_text(json.dumps(state))
    print(f"farm up in {farm.base}: {', '.join(farm.devices)}; inventory written to {inv}")
    return 0


def down(args) -> int:
    import shutil

    n = 0
    for state_file in sorted(STATE.glob("farm-*/state.json")):
        state = json.loads(state_file.read_text())
        for d in state["devices"].values():
            pids = subprocess.run(["ip", "netns", "pids", d["netns"]], capture_output=True, text=True).stdout.split()
            for pid in pids:
                subprocess.run(["kill", "-9", pid], capture_output=True)
            subprocess.run(["ip", "link", "del", d["veth"]], capture_output=True)
            subprocess.run(["ip", "netns", "del", d["netns"]], capture_output=True)
            n += 1
        shutil.rmtree(state["base"], ignore_errors=True)
    print(f"farm down: {n} device(s) stopped")
    return 0


def main(argv=None) -> int:
    configure()
    ap = argparse.ArgumentParser(prog="python -m devices.testfarm", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up")
    p.add_argument("--x86", type=int, default=1)
    p.add_argument("--arm", type=int, default=1)
    p.add_argument("--inventory", type=Path, default=Path("inventory.farm.yaml"))
    p.set_defaults(fn=up)
    sub.add_parser("down").set_defaults(fn=down)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except FarmError as e:
        print(f"testfarm: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
