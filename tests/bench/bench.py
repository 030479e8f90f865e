#!/usr/bin/env python3
"""presta-reconciler vs Terraform, side by side, on the same emulator and the same stack.

    python3 tests/bench/bench.py                 # everything (about 6-10 minutes on 2 cores)
    python3 tests/bench/bench.py --quick         # fewer repetitions, scale up to 50 stacks

It builds the optimised binary (profile `perf`: release without LTO), starts the local AWS emulator (moto on 127.0.0.1, seeded with the
demo network), and measures, for the demo stack:

  1. cold create of the whole stack         presta-reconciler apply   vs terraform apply
  2. drift detection on a converged stack   presta-reconciler plan    vs terraform plan -refresh-only
  3. heal one drift (port 22 opened by hand on the instances' security group)
                                            presta-reconciler apply   vs terraform apply
  4. scale: presta-reconciler plan for 1, 10, 50 and 100 stacks in one region
  5. the front door (spec.dns): the calls it adds to a converged plan and to each of the
     daemon's steady runs (--front-only runs this section alone)
  6. change events (serve --events auto) vs polling: time from a change to its heal, and the
     AWS reads per stack-hour of an idle stack (time compressed 10x: --interval 6 s,
     --resync-interval 60 s, the ratio of the defaults 60 s and 600 s)
  7. a fleet in one daemon (--fleet 1000 stacks; --fleet-only runs this section alone): on the
     in-memory fake of AWS under virtual time (tests/suite/fleet.rs), with AWS's read limit
     and the API budget at 20 requests a second per service, a 10-minute resync and events
     flowing: throttled reads, the longest time between two looks at a stack, changes healed
     while the resyncs run, reads a second, peak memory; and the idle reads per stack-hour
     with events vs 60 s polling over three virtual hours (exact where section 6 samples)

Wall time (median, min, max over several runs), peak RSS of the whole process tree (Terraform
starts its provider as a child process) and the AWS calls each tool makes, counted at the
emulator (its request log tells the callers apart by User-Agent), so both are counted alike.

Terraform is found on the PATH; the hashicorp/aws provider through a setting: PRESTA_TF_MIRROR
(a filesystem mirror directory), else the filesystem_mirror of the CLI config named by
TF_CLI_CONFIG_FILE. Without either, the Terraform half is skipped and the report says so.

Results: tests/bench/results/report.md and report.json; --update-docs also writes the tables
into docs/performance.md. Nothing here is a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "bench"
LAUNCHER = ROOT / "crates" / "presta-emulator" / "moto" / "launcher.py"
REGION = "eu-west-3"
DB_PASSWORD = "BenchPassw0rdBenchPassw0rd"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- processes


def _children(pid: int) -> list[int] | None:
    """Direct children from /proc/PID/task/*/children (cheap); None where the kernel lacks it."""
    try:
        kids: list[int] = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        return kids
    except FileNotFoundError:
        return None
    except OSError:
        return []


def _parent_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return children


def tree_memory_kib(pid: int) -> tuple[int, dict[int, int]]:
    """Resident memory of a process and all its descendants (KiB), and each one's own peak
    (VmHWM, KiB), from /proc. Walks the tree through the children files, so that sampling
    every few milliseconds costs little CPU (the measured tools share 2 cores with it)."""
    parents = None
    total, peaks, stack = 0, {}, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                status = f.read()
        except OSError:
            continue
        rss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        hwm = re.search(r"^VmHWM:\s+(\d+)", status, re.M)
        total += int(rss.group(1)) if rss else 0
        peaks[p] = int(hwm.group(1)) if hwm else 0
        kids = _children(p)
        if kids is None:
            parents = parents if parents is not None else _parent_map()
            kids = parents.get(p, [])
        stack.extend(kids)
    return total, peaks


def measure(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> dict:
    """Runs cmd; returns wall seconds, peak memory (MiB) of its process tree, exit code, output.

    Peak memory: the larger of the tree's summed RSS (sampled every 5 ms) and the sum of each
    process's own peak (VmHWM, as last seen). Not ru_maxrss: for a child forked from this
    Python process it counts the memory of the fork before exec."""
    out = tempfile.TemporaryFile()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    peak_sum = 0
    last_hwm: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_sum
        while not done.is_set():
            total, peaks = tree_memory_kib(proc.pid)
            peak_sum = max(peak_sum, total)
            last_hwm.update(peaks)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    out.seek(0)
    peak = max(peak_sum, sum(last_hwm.values()))
    return {
        "wall": wall,
        "rss_mib": peak / 1024,
        "code": proc.returncode,
        "output": out.read().decode(errors="replace"),
    }


# ----------------------------------------------------------------------------- emulator


class Emulator:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "--host", "127.0.0.1", "--port", "0", "--seed", "demo",
             "--region", REGION],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline()
        ready = json.loads(line)
        if ready.get("event") != "ready":
            raise SystemExit(f"the emulator did not start: {line}")
        self.endpoint = ready["endpoint"]
        assert self.endpoint.startswith("http://127.0.0.1:"), self.endpoint

    def calls(self) -> list[dict]:
        with urllib.request.urlopen(f"{self.endpoint}/_presta/calls") as r:
            return json.load(r)["calls"]

    def reset_calls(self) -> None:
        req = urllib.request.Request(f"{self.endpoint}/_presta/calls", method="DELETE")
        urllib.request.urlopen(req).read()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "RUST_LOG": "warn",
        })
        return env

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def counted(emu: Emulator, agent: str, fn):
    """Runs fn; returns its result and the calls `agent` made meanwhile."""
    emu.reset_calls()
    result = fn()
    calls = [c for c in emu.calls() if c.get("agent") == agent]
    return result, calls


def summary(calls: list[dict]) -> dict:
    by_op: dict[str, int] = {}
    for c in calls:
        key = f"{c['service']} {c['operation']}"
        by_op[key] = by_op.get(key, 0) + 1
    reads = sum(n for k, n in by_op.items() if re.search(r" (Describe|Get|List|GET )", k))
    return {"total": len(calls), "reads": reads, "writes": len(calls) - reads, "by_operation": by_op}


def open_ssh(emu: Emulator, group_name: str) -> None:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=emu.endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    gid = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [group_name]}])["SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=gid, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                                     "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])


def ssh_open(emu: Emulator, group_name: str) -> bool:
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=emu.endpoint, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    g = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [group_name]}])["SecurityGroups"][0]
    return any(p.get("FromPort") == 22 for p in g["IpPermissions"])


def stats(samples: list[dict]) -> dict:
    walls = [s["wall"] for s in samples]
    return {
        "runs": len(samples),
        "median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
        "peak_rss_mib": max(s["rss_mib"] for s in samples),
    }


# ----------------------------------------------------------------------------- terraform


def find_mirror() -> tuple[Path | None, str]:
    if os.environ.get("PRESTA_TF_MIRROR"):
        return Path(os.environ["PRESTA_TF_MIRROR"]), "PRESTA_TF_MIRROR"
    cfg = os.environ.get("TF_CLI_CONFIG_FILE")
    if cfg and Path(cfg).is_file():
        m = re.search(r'filesystem_mirror\s*{[^}]*path\s*=\s*"([^"]+)"', Path(cfg).read_text())
        if m:
            return Path(m.group(1)), f"TF_CLI_CONFIG_FILE ({cfg})"
    return None, "neither PRESTA_TF_MIRROR nor a filesystem_mirror in TF_CLI_CONFIG_FILE is set"


class Terraform:
    def __init__(self, mirror: Path, emu: Emulator, user_data: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="presta-bench-tf-"))
        shutil.copy(BENCH / "terraform" / "main.tf", self.dir / "main.tf")
        (self.dir / "cli.tfrc").write_text(
            'provider_installation {\n'
            f'  filesystem_mirror {{\n    path = "{mirror}"\n'
            '    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n'
            '  direct { exclude = ["registry.terraform.io/hashicorp/aws"] }\n}\n')
        self.env = emu.env()
        self.env.update({"TF_CLI_CONFIG_FILE": str(self.dir / "cli.tfrc"), "TF_IN_AUTOMATION": "1",
                         "CHECKPOINT_DISABLE": "1"})
        self.vars = ["-var", f"endpoint={emu.endpoint}", "-var", f"user_data_file={user_data}",
                     "-var", f"db_password={DB_PASSWORD}", "-var", f"admin_password={DB_PASSWORD}"]
        r = measure(["terraform", "init", "-input=false", "-no-color"], self.env, self.dir)
        if r["code"] != 0:
            raise RuntimeError("terraform init failed:\n" + r["output"][-2000:])

    def run(self, *args: str) -> dict:
        return measure(["terraform", *args, "-input=false", "-no-color", *self.vars], self.env, self.dir)

    def version(self) -> str:
        out = subprocess.run(["terraform", "version"], capture_output=True, text=True).stdout
        return " ".join(out.split("\n")[0:1])


# ----------------------------------------------------------------------------- the benchmark


def stacks_yaml(n: int) -> str:
    base = (ROOT / "config" / "demo.yaml").read_text()
    body = base[base.index("apiVersion:"):]
    docs = [body.replace("name: demo\n", f"name: s{i:03d}\n", 1) for i in range(1, n + 1)]
    return "---\n".join(docs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 runs per figure, scale up to 50 stacks")
    ap.add_argument("--runs", type=int, default=None, help="runs per drift-detection figure (default 7)")
    ap.add_argument("--binary", type=Path, help="use this presta-reconciler (e.g. target/release/...) instead of building one")
    ap.add_argument("--no-terraform", action="store_true", help="skip the Terraform half")
    ap.add_argument("--scale", default=None, help="stack counts, comma-separated (default 1,10,50,100)")
    ap.add_argument("--update-docs", action="store_true", help="write the tables into docs/performance.md")
    ap.add_argument("--fleet", type=int, default=1000, help="stacks of section 7's fleet (default 1000; 0 skips it)")
    ap.add_argument("--fleet-only", action="store_true", help="run section 7 alone (no emulator, no Terraform)")
    ap.add_argument("--front-only", action="store_true", help="run section 5 alone (the front door; no Terraform)")
    args = ap.parse_args()
    runs = args.runs or (3 if args.quick else 7)
    scale = [int(x) for x in (args.scale or ("1,10,50" if args.quick else "1,10,50,100")).split(",")]
    started = time.time()
    results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "machine": {}, "skipped": [], "notes": []}

    # Machine and versions.
    results["machine"] = {
        "cpus": os.cpu_count(), "platform": platform.platform(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
    }
    try:
        import moto
        results["machine"]["moto"] = moto.__version__
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-r",
                        str(LAUNCHER.parent / "requirements.txt")], check=True)
        import moto
        results["machine"]["moto"] = moto.__version__

    if args.fleet_only:
        results["fleet"] = fleet_section(args.fleet or 1000)
        results["duration_s"] = round(time.time() - started)
        write_report(results, args.update_docs)
        return 0

    binary = args.binary
    if binary is None:
        log("building the optimised binary (cargo build --profile perf: release without LTO)")
        t = time.perf_counter()
        subprocess.run(["cargo", "build", "--profile", "perf", "--locked", "--bin", "presta-reconciler"],
                       cwd=ROOT, check=True)
        results["notes"].append(f"`cargo build --profile perf` took {time.perf_counter() - t:.0f} s "
                                "(incremental when target/ already held a build)")
        binary = ROOT / "target" / "perf" / "presta-reconciler"
    results["machine"]["presta-reconciler"] = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True).stdout.strip()

    emu = Emulator()
    log(f"emulator at {emu.endpoint}")
    env = emu.env()
    demo = ROOT / "config" / "demo.yaml"
    work = Path(tempfile.mkdtemp(prefix="presta-bench-"))
    if args.front_only:
        try:
            r = measure([str(binary), "apply", "-f", str(demo)], env)
            assert r["code"] == 0, r["output"][-3000:]
            results["front_door"] = front_section(binary, emu, env, work, demo)
        finally:
            emu.stop()
        results["duration_s"] = round(time.time() - started)
        write_report(results, args.update_docs)
        return 0
    try:
        tf = None
        mirror, how = find_mirror()
        if args.no_terraform:
            results["skipped"].append("Terraform: --no-terraform")
        elif shutil.which("terraform") is None:
            results["skipped"].append("Terraform: `terraform` is not on the PATH")
        elif mirror is None or not mirror.is_dir():
            results["skipped"].append(f"Terraform: no provider mirror ({how})")
        else:
            user_data = work / "user-data.sh"
            user_data.write_text(subprocess.run(
                [str(binary), "bootstrap", "-f", str(demo)], capture_output=True, text=True, check=True).stdout)
            log(f"terraform init (provider mirror from {how})")
            tf = Terraform(mirror, emu, user_data)
            results["machine"]["terraform"] = tf.version()
            results["machine"]["terraform_provider"] = "hashicorp/aws 5.100.0"

        # 1. Cold create.
        log("cold create: presta-reconciler apply")
        r, calls = counted(emu, "other", lambda: measure([str(binary), "apply", "-f", str(demo)], env))
        assert r["code"] == 0, r["output"][-3000:]
        results["cold_create"] = {"presta": {**stats([r]), "calls": summary(calls)}}
        if tf:
            log("cold create: terraform apply (its waiters poll the ALB and RDS for about 90 s)")
            r, calls = counted(emu, "terraform", lambda: tf.run("apply", "-auto-approve"))
            assert r["code"] == 0, r["output"][-3000:]
            results["cold_create"]["terraform"] = {**stats([r]), "calls": summary(calls)}
            settle = tf.run("apply", "-refresh-only", "-auto-approve")
            assert settle["code"] == 0, settle["output"][-2000:]

        # 2. Drift detection on a converged stack.
        log(f"drift detection: {runs} runs each")
        samples, per_run = [], []
        for _ in range(runs):
            r, calls = counted(emu, "other", lambda: measure([str(binary), "plan", "-f", str(demo)], env))
            assert r["code"] == 0, "the demo stack is converged: " + r["output"][-2000:]
            samples.append(r)
            per_run.append(summary(calls))
        results["drift_detection"] = {"presta": {**stats(samples), "calls": per_run[-1]}}
        if tf:
            samples, per_run = [], []
            for _ in range(runs):
                r, calls = counted(emu, "terraform", lambda: tf.run("plan", "-refresh-only", "-detailed-exitcode"))
                assert r["code"] in (0, 2), r["output"][-2000:]
                samples.append(r)
                per_run.append(summary(calls))
            results["drift_detection"]["terraform"] = {**stats(samples), "calls": per_run[-1]}

        # 3. Heal one drift: the same change on both stacks.
        log("heal one drift: port 22 opened by hand")
        open_ssh(emu, "demo-app-sg")
        r, calls = counted(emu, "other", lambda: measure([str(binary), "apply", "-f", str(demo)], env))
        assert r["code"] == 0 and not ssh_open(emu, "demo-app-sg"), r["output"][-2000:]
        results["heal"] = {"presta": {**stats([r]), "calls": summary(calls)}}
        if tf:
            open_ssh(emu, "tfdemo-app-sg")
            r, calls = counted(emu, "terraform", lambda: tf.run("apply", "-auto-approve"))
            healed = not ssh_open(emu, "tfdemo-app-sg")
            assert r["code"] == 0, r["output"][-2000:]
            results["heal"]["terraform"] = {**stats([r]), "calls": summary(calls), "healed": healed}

        # 4. Scale: N stacks in one region.
        results["scale"] = []
        created = 0
        for n in scale:
            path = work / f"stacks-{n}.yaml"
            path.write_text(stacks_yaml(n))
            if n > created:
                log(f"scale: creating stacks up to {n}")
                r = measure([str(binary), "apply", "-f", str(path), "--concurrency", "16"], env)
                assert r["code"] == 0, r["output"][-3000:]
                created = n
            log(f"scale: plan of {n} stacks")
            samples, per_run = [], []
            for _ in range(max(3, runs // 2)):
                r, calls = counted(emu, "other", lambda: measure(
                    [str(binary), "plan", "-f", str(path), "--concurrency", "16"], env))
                assert r["code"] == 0, r["output"][-2000:]
                samples.append(r)
                per_run.append(summary(calls))
            s = stats(samples)
            results["scale"].append({"stacks": n, **s, "calls": per_run[-1]})
        # 5. The front door (spec.dns).
        results["front_door"] = front_section(binary, emu, env, work, demo)

        # 6. Change events vs polling, on the (converged) demo stack.
        results["events"] = events_section(binary, emu, env, demo, runs)
    finally:
        emu.stop()
    # 7. A fleet in one daemon, on the in-memory fake.
    if args.fleet:
        results["fleet"] = fleet_section(args.fleet)
    results["duration_s"] = round(time.time() - started)
    write_report(results, args.update_docs)
    return 0


class Daemon:
    """`serve` on a free port, its first line read; stopped with SIGTERM."""

    def __init__(self, binary: Path, env: dict[str, str], args: list[str]) -> None:
        self.proc = subprocess.Popen([str(binary), "serve", "--listen", "127.0.0.1:0", "--replica-id", "bench", *args],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline().strip()
        self.base = line.replace("listening on ", "")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return json.loads(r.read())

    def wait(self, what: str, check, limit: float = 120.0) -> None:
        end = time.time() + limit
        while time.time() < end:
            try:
                if check(self):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"daemon: {what} not within {limit} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def heal_time(emu: Emulator, limit: float) -> float:
    """Opens SSH by hand on the demo's group; seconds until it is closed again."""
    open_ssh(emu, "demo-app-sg")
    t = time.perf_counter()
    while time.perf_counter() - t < limit:
        if not ssh_open(emu, "demo-app-sg"):
            return time.perf_counter() - t
        time.sleep(0.05)
    return float("nan")


def events_section(binary: Path, emu: Emulator, env: dict[str, str], demo: Path, runs: int) -> dict:
    out: dict = {}
    converged = lambda d: d.get("/stacks/demo")["state"] == "converged"  # noqa: E731
    flowing = lambda d: converged(d) and d.get("/stacks").get("events", [{}])[0].get("mode") == "events"  # noqa: E731

    log("change events: heal time with events (--interval 60, --resync-interval 600)")
    d = Daemon(binary, env, ["-f", str(demo), "--events", "auto", "--interval", "60",
                             "--resync-interval", "600", "--heartbeat-interval", "5"])
    try:
        d.wait("events flowing", flowing)
        time.sleep(3)
        out["heal_events_s"] = [round(heal_time(emu, 30), 2) for _ in range(max(runs, 5))]
    finally:
        d.stop()
    log("change events: heal time with 60 s polling (--events off)")
    d = Daemon(binary, env, ["-f", str(demo), "--events", "off", "--interval", "60"])
    try:
        d.wait("converged", converged)
        samples = []
        for _ in range(3):
            samples.append(round(heal_time(emu, 90), 2))
        out["heal_polling_s"] = samples
    finally:
        d.stop()

    # Idle reads, time compressed 10x: the ratio of the intervals is the defaults'.
    window = 120.0
    for mode, args in (("polling", ["--events", "off", "--interval", "6"]),
                       ("events", ["--events", "auto", "--interval", "6", "--resync-interval", "60",
                                   "--heartbeat-interval", "6"])):
        log(f"change events: idle AWS calls for {window:.0f} s, {mode}")
        d = Daemon(binary, env, ["-f", str(demo), *args])
        try:
            d.wait("ready", flowing if mode == "events" else converged)
            emu.reset_calls()
            time.sleep(window)
            calls = [c for c in emu.calls() if c.get("agent") == "presta-bench"]
        finally:
            d.stop()
        plumbing = [c for c in calls if c["service"] in ("sqs", "events", "cloudtrail", "sts")]
        stack_calls = [c for c in calls if c not in plumbing]
        reads = summary(stack_calls)["reads"]
        # Per stack-hour at the uncompressed intervals: the window is 10x shorter.
        out[f"idle_{mode}"] = {
            "stack_reads_per_stack_hour": round(reads * 3600 / window / 10, 1),
            # Not scaled: the long polls wait up to 6 s here (the heartbeat), 10 s by default.
            "event_path_calls_per_region_hour": round(len(plumbing) * 3600 / window, 1),
            "window_s": window,
        }
    return out


FRONT_DOOR = ("acm ", "route53 ", "elasticloadbalancing DescribeRules")


def front_section(binary: Path, emu: Emulator, env: dict[str, str], work: Path, demo: Path) -> dict:
    """What a stack under its own name adds: to a converged one-shot `plan`, and to each of the
    daemon's steady runs, on a stack of its own (`front`) in the seeded zone `demo.example.com`."""
    front = work / "front.yaml"
    front.write_text((ROOT / "config" / "https" / "demo.yaml").read_text()
                     .replace("name: demo\n", "name: front\n", 1))
    log("front door: apply and plan of the demo under its own name")
    r = measure([str(binary), "apply", "-f", str(front)], env)
    assert r["code"] == 0, r["output"][-3000:]
    r, calls = counted(emu, "other", lambda: measure([str(binary), "plan", "-f", str(front)], env))
    assert r["code"] == 0, "the front stack is converged: " + r["output"][-2000:]
    # The baseline in the same region: the demo stack's plan, now beside `front`.
    _, plain = counted(emu, "other", lambda: measure([str(binary), "plan", "-f", str(demo)], env))
    out = {"plain": summary(plain), "with_dns": summary(calls)}
    # The daemon's steady runs (polling every 2 s, no events): the calls each run adds.
    window = 30.0
    log(f"front door: the daemon's steady runs for {window:.0f} s")
    d = Daemon(binary, env, ["-f", str(front), "--events", "off", "--interval", "2"])
    try:
        d.wait("converged", lambda d: d.get("/stacks/front")["state"] == "converged")
        time.sleep(3)
        emu.reset_calls()
        time.sleep(window)
        steady = [c for c in emu.calls() if c.get("agent") == "presta-bench"]
    finally:
        d.stop()
    by_op = summary(steady)["by_operation"]
    observations = by_op.get("elasticloadbalancing DescribeLoadBalancers", 0)
    added = {k: n for k, n in by_op.items() if k.startswith(FRONT_DOOR)}
    out["daemon_steady"] = {
        "runs": observations,
        "front_door_calls": added,
        "per_run": round(sum(added.values()) / observations, 2) if observations else None,
        "window_s": window,
    }
    return out


def fleet_section(stacks: int) -> dict:
    """Runs tests/suite/fleet.rs's benchmarks (ignored tests of the suite binary, debug build):
    the fleet of `stacks` and the idle reads; their figures come back as one JSON line each."""
    log("fleet: building the test binary (cargo test --test suite --no-run)")
    out = subprocess.run(["cargo", "test", "--locked", "--test", "suite", "--no-run", "--message-format=json"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    exe = None
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "suite" \
                and msg.get("executable"):
            exe = msg["executable"]
    if not exe:
        raise RuntimeError("cargo did not name the suite's test binary")

    def run(test: str, tag: str, n: int) -> dict:
        env = dict(os.environ, PRESTA_FLEET_STACKS=str(n))
        r = measure([exe, test, "--exact", "--ignored", "--nocapture", "--test-threads", "1"], env, cwd=ROOT)
        # libtest may print the line after `test NAME ... ` on the same line.
        found = [x[x.index(tag + " {") + len(tag) + 1:] for x in r["output"].splitlines() if tag + " {" in x]
        if r["code"] != 0 or not found:
            raise RuntimeError(f"{test} failed:\n" + r["output"][-3000:])
        return {**json.loads(found[-1].strip()), "process_wall_s": round(r["wall"], 1),
                "process_peak_rss_mib": round(r["rss_mib"], 1)}

    log(f"fleet: {stacks} stacks, 20 reads/s per service, resync 600 s (virtual time; minutes of CPU)")
    fleet = run("fleet::thousand_stacks", "FLEET", stacks)
    log("fleet: idle reads per stack-hour, events vs polling, 20 stacks over 3 virtual hours each")
    idle = run("fleet::idle_reads", "IDLE", 20)
    return {"fleet": fleet, "idle": idle}


# ----------------------------------------------------------------------------- report


def ratio(a: float, b: float) -> str:
    return f"{a / b:.0f}×" if b else "n/a"


def tables(r: dict) -> str:
    if "drift_detection" not in r:
        return "\n\n".join(t for t in (front_table(r), fleet_table(r)) if t)
    out = []
    tf = "terraform" in r.get("drift_detection", {})
    out.append("| figure | presta-reconciler | Terraform | ratio |")
    out.append("|---|---|---|---|")

    def row(label: str, key: str, fmt, better_low=True) -> None:
        p = r[key]["presta"]
        t = r[key].get("terraform")
        pv = fmt(p)
        tv = fmt(t) if t else "skipped"
        out.append(f"| {label} | {pv} | {tv} | {ratios.get(label, '')} |")

    ratios: dict[str, str] = {}
    d = r["drift_detection"]
    if tf:
        ratios["drift detection: wall time (median)"] = ratio(d["terraform"]["median_s"], d["presta"]["median_s"]) + " faster"
        ratios["drift detection: peak RSS"] = ratio(d["terraform"]["peak_rss_mib"], d["presta"]["peak_rss_mib"]) + " less"
        ratios["heal one drift: wall time"] = ratio(r["heal"]["terraform"]["median_s"], r["heal"]["presta"]["median_s"]) + " faster"
        ratios["cold create: wall time"] = ratio(r["cold_create"]["terraform"]["median_s"], r["cold_create"]["presta"]["median_s"]) + " faster"
    row("drift detection: wall time (median)", "drift_detection",
        lambda s: f"{s['median_s']:.3f} s (min {s['min_s']:.3f}, max {s['max_s']:.3f}; {s['runs']} runs)")
    row("drift detection: peak RSS", "drift_detection", lambda s: f"{s['peak_rss_mib']:.0f} MiB")
    row("drift detection: AWS calls", "drift_detection",
        lambda s: f"{s['calls']['total']} ({s['calls']['reads']} reads)")
    row("heal one drift: wall time", "heal", lambda s: f"{s['median_s']:.2f} s")
    row("heal one drift: AWS calls", "heal", lambda s: f"{s['calls']['total']} ({s['calls']['writes']} writes)")
    row("cold create: wall time", "cold_create", lambda s: f"{s['median_s']:.1f} s")
    row("cold create: peak RSS", "cold_create", lambda s: f"{s['peak_rss_mib']:.0f} MiB")
    row("cold create: AWS calls", "cold_create", lambda s: f"{s['calls']['total']} ({s['calls']['writes']} writes)")
    out.append("")
    out.append("Scale: `presta-reconciler plan` of N stacks in one region (every stack converged).")
    out.append("")
    out.append("| stacks | wall (median) | min | max | peak RSS | AWS calls | calls per stack | list calls (DescribeSecurityGroups, DescribeLoadBalancers, DescribeDBInstances) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for s in r["scale"]:
        ops = s["calls"]["by_operation"]
        lists = ", ".join(str(ops.get(k, 0)) for k in (
            "ec2 DescribeSecurityGroups", "elasticloadbalancing DescribeLoadBalancers", "rds DescribeDBInstances"))
        out.append(f"| {s['stacks']} | {s['median_s']:.3f} s | {s['min_s']:.3f} | {s['max_s']:.3f} | "
                   f"{s['peak_rss_mib']:.0f} MiB | {s['calls']['total']} | {s['calls']['total'] / s['stacks']:.1f} | {lists} |")
    front = front_table(r)
    if front:
        out += ["", front]
    ev = r.get("events")
    if ev:
        med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
        pe, pp = ev["idle_events"], ev["idle_polling"]
        out.append("")
        out.append("Change events (`serve --events auto`) vs polling (`--events off`), the demo stack, the emulator's "
                   "CloudTrail delay at 1 s:")
        out.append("")
        out.append("| figure | events | polling (60 s) |")
        out.append("|---|---|---|")
        out.append(f"| change → healed (median; samples) | {med(ev['heal_events_s']):.2f} s; {ev['heal_events_s']} | "
                   f"{med(ev['heal_polling_s']):.1f} s; {ev['heal_polling_s']} |")
        out.append(f"| idle: AWS reads per stack-hour (resync 600 s vs interval 60 s) | "
                   f"{pe['stack_reads_per_stack_hour']} | {pp['stack_reads_per_stack_hour']} |")
        out.append(f"| idle: event path calls per region-hour (SQS, EventBridge; heartbeat every 6 s, as measured) | "
                   f"{pe['event_path_calls_per_region_hour']} | 0 |")
        out.append("")
        out.append(f"Idle figures measured over {pe['window_s']:.0f} s with time compressed 10× (`--interval 6`, "
                   "`--resync-interval 60`), scaled back to the default intervals. With polling, each change is made "
                   "just after the previous heal, so it waits nearly a whole interval (the worst case; 30 s on "
                   "average for a change made at a random time).")
    if r.get("fleet"):
        out.append("")
        out.append(fleet_table(r))
    return "\n".join(out)


def front_table(r: dict) -> str:
    """Section 5's paragraphs, or nothing when it did not run."""
    fd = r.get("front_door")
    if not fd:
        return ""
    out: list[str] = []
    added = {k: n for k, n in fd["with_dns"]["by_operation"].items()
             if k.startswith(FRONT_DOOR)}
    out.append("")
    out.append(f"Front door (`spec.dns`, `config/https/demo.yaml`): a converged `plan` makes "
               f"{fd['with_dns']['total']} calls against {fd['plain']['total']} for the same stack without a "
               f"domain; ACM, Route 53 and the listener's rules: " + ", ".join(f"`{k}` {n}" for k, n in sorted(added.items()))
               + ". A one-shot `plan` also asks the zone's id, the region's certificate list and the tags of "
               "the certificates of its domain and of the listener's rules; the daemon remembers them.")
    st = fd.get("daemon_steady")
    if st:
        out.append("")
        out.append(f"The daemon's steady runs (`serve --events off --interval 2`, {st['window_s']:.0f} s): "
                   f"{st['runs']} runs, {st['per_run']} front-door calls a run ("
                   + ", ".join(f"`{k}` {n}" for k, n in sorted(st["front_door_calls"].items()))
                   + "); the issue's bound is 3 (tests/suite/domain.rs checks it too).")
    return "\n".join(out).strip("\n")


def fleet_table(r: dict) -> str:
    fl = r.get("fleet")
    if not fl:
        return ""
    f, i = fl["fleet"], fl["idle"]
    heal = f["heal_s"]
    out = [f"A fleet in one daemon (section 7; the in-memory fake under virtual time, the debug build): "
           f"{f['stacks']} stacks, AWS's read limit and the API budget at {f['rate_per_service']:.0f} requests a "
           f"second per service, resync {f['resync_s']:.0f} s, events flowing:", "",
           "| figure | value |", "|---|---|",
           f"| built from nothing (virtual time) | {f['build_s']:.0f} s |",
           f"| reads throttled by AWS (build included) | {sum(f['throttled'].values())} |",
           f"| longest time between two runs of a stack (watched {f.get('watch_s', 1800):.0f} s) | "
           f"{f['longest_gap_s']:.1f} s; stacks over their interval: {len(f['late'])} |",
           f"| changes by hand healed during the resyncs (event 1 s after the change) | "
           f"max {max(heal):.1f} s over {len(heal)} |",
           "| reads a second while watched, by service | " + ", ".join(f"{k} {v}" for k, v in f["reads_per_s"].items()) + " |",
           f"| time requests waited for the budget while watched (summed) | {f['budget_wait_s']:.1f} s |",
           f"| peak memory (the daemon and the fake's resources in one process) | {f['peak_rss_mib']:.0f} MiB |",
           f"| wall time of the whole run | {f['process_wall_s']:.0f} s |",
           "",
           f"Idle reads per stack-hour ({i['stacks']} stacks, {i['window_h']} virtual hours each): "
           f"{i['events_reads_per_stack_hour']} with events (10-minute resync) against "
           f"{i['polling_reads_per_stack_hour']} with 60 s polling: {i['ratio']} of it."]
    return "\n".join(out)


def calls_table(r: dict) -> str:
    if "drift_detection" not in r:
        return "(sections 1 to 6 not run)"
    d = r["drift_detection"]
    ops = sorted(set(d["presta"]["calls"]["by_operation"]) | set(d.get("terraform", {}).get("calls", {}).get("by_operation", {})))
    out = ["| operation | presta-reconciler | Terraform |", "|---|---|---|"]
    for op in ops:
        p = d["presta"]["calls"]["by_operation"].get(op, 0)
        t = d.get("terraform", {}).get("calls", {}).get("by_operation", {}).get(op, 0) if "terraform" in d else "-"
        out.append(f"| `{op}` | {p} | {t} |")
    return "\n".join(out)


def write_report(r: dict, update_docs: bool) -> None:
    outdir = BENCH / "results"
    outdir.mkdir(exist_ok=True)
    (outdir / "report.json").write_text(json.dumps(r, indent=2) + "\n")
    m = r["machine"]
    md = [
        f"# Benchmark results ({r['date']})",
        "",
        f"Machine: {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['platform']}; moto {m.get('moto')}, "
        f"Python {m['python']}; {m.get('presta-reconciler', 'presta-reconciler binary not run')}; {m.get('terraform', 'Terraform skipped')} "
        f"{('with ' + m['terraform_provider']) if 'terraform_provider' in m else ''}. Whole run: {r['duration_s']} s.",
        "",
        tables(r),
        "",
        "AWS calls of one drift detection, by operation (counted at the emulator):",
        "",
        calls_table(r),
        "",
    ]
    if r["skipped"]:
        md += ["Skipped:", ""] + [f"- {s}" for s in r["skipped"]] + [""]
    if r["notes"]:
        md += ["Notes:", ""] + [f"- {s}" for s in r["notes"]] + [""]
    text = "\n".join(md)
    (outdir / "report.md").write_text(text)
    print(text)
    if update_docs:
        doc = ROOT / "docs" / "performance.md"
        body = doc.read_text()
        start, end = "<!-- bench:start -->", "<!-- bench:end -->"
        i, j = body.index(start) + len(start), body.index(end)
        doc.write_text(body[:i] + "\n" + "\n".join(md[2:]) + "\n" + body[j:])
        log(f"updated {doc}")


if __name__ == "__main__":
    sys.exit(main())
