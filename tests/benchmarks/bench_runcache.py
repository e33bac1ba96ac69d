"""Shared run cache benchmark (issue 14): a teammate's fresh clone restores a 5-stage pipeline
from the shared run cache on an S3 server, `mlops` against `dvc`, side by side in one run.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_runcache.py [--work DIR] [--rounds 5] [--size-mb 40]

(from the repository root; PYTHONPATH=. makes the mlops of this tree the one measured.)

What it does:
1. starts moto's S3 server on 127.0.0.1 (the test suite's server) with two buckets;
2. builds the same project twice, one for each tool: a random data file of SIZE MB tracked by
   the tool (`mlops add` / `dvc add`), five Python stage scripts that do real work (hashing and
   reordering the data, about a second of CPU each: prep -> features (a folder of 20 files) ->
   split -> train -> evaluate), committed with the tool's remote config, without the lock file;
3. runs the pipeline there once and pushes it with its run cache:
   `mlops push --run-cache` / `dvc push --run-cache`;
4. each round, for each tool in alternating order, makes a teammate's fresh `git clone` (its own
   empty cache) and times, as one figure: `mlops pull --run-cache && mlops run` against
   `dvc pull --run-cache data/raw.bin.dvc && dvc repro --pull`. DVC needs both changes to do the
   job (DVC 3.x, measured here): with no dvc.lock committed, a bare `dvc pull` moves the same and
   then exits 1 ("Checkout failed" for the stage outputs a lock file would name); and
   `pull --run-cache` takes the run-cache entries but not the objects of their outputs, so a
   plain `dvc repro` then runs every stage, while `repro --pull` fetches them and restores
   ("Stage is cached - skipping run"). After each, it checks that no stage command ran (a counter
   file beside the clones), that every output is byte-identical to the origin's, and (mlops) that
   pipeline.lock equals the origin's.
The measured tree's mlops is compiled to bytecode first (as pip does for an installed package, and
did for DVC's venv). Prints each round (wall time, and the CPU time of the tool's processes, which a loaded machine
inflates less), then best and median per tool and the ratio dvc/mlops (target: >= 3x).
DVC comes from WORK/dvc-venv (tests/benchmarks/bench_data.py's `install_dvc`, with `dvc[s3]`).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import bench_data  # noqa: E402  (install_dvc)

STAGE_NAMES = ("prep", "features", "split", "train", "evaluate")
# each stage: about a second of real CPU work (PBKDF2 over the data's digest), then outputs
# derived from its inputs, so that every output depends on the bytes before it
COMMON = """import hashlib, os, sys
def work(data: bytes, rounds: int = 1_000_000) -> bytes:
    with open(os.environ["BENCH_COUNTER"], "a") as f:  # beside the clones: an execution is seen
        f.write(os.path.basename(sys.argv[0]) + "\\n")
    digest = hashlib.sha256(data).digest()
    return hashlib.pbkdf2_hmac("sha256", digest, b"bench", rounds)
"""
SCRIPTS = {
    "stages/prep.py": COMMON
    + """data = open("data/raw.bin", "rb").read()
key = work(data)
chunks = [data[i : i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
chunks.sort(key=lambda c: hashlib.sha256(key + c[:64]).digest())
os.makedirs("work", exist_ok=True)
open("work/clean.bin", "wb").write(b"".join(chunks))
""",
    "stages/features.py": COMMON
    + """data = open("work/clean.bin", "rb").read()
key = work(data)
os.makedirs("work/features", exist_ok=True)
part = len(data) // 20 + 1
for i in range(20):
    open(f"work/features/f{i:02d}.bin", "wb").write(key + data[i * part : (i + 1) * part])
""",
    "stages/split.py": COMMON
    + """names = sorted(os.listdir("work/features"))
data = b"".join(open(os.path.join("work/features", n), "rb").read() for n in names)
key = work(data)
cut = len(data) * 4 // 5
open("work/train.bin", "wb").write(key + data[:cut])
open("work/test.bin", "wb").write(key + data[cut:])
""",
    "stages/train.py": COMMON
    + """data = open("work/train.bin", "rb").read()
key = work(data)
os.makedirs("models", exist_ok=True)
model = b"".join(hashlib.sha256(key + data[i : i + 4096]).digest() for i in range(0, len(data), 4096))
open("models/model.bin", "wb").write(model)
""",
    "stages/evaluate.py": COMMON
    + """model = open("models/model.bin", "rb").read()
test = open("work/test.bin", "rb").read()
key = work(model + test)
open("metrics.json", "w").write('{"score": %d}\\n' % (key[0] * 256 + key[1]))
""",
}
STAGES = {
    "prep": (["data/raw.bin", "stages/prep.py"], ["work/clean.bin"]),
    "features": (["work/clean.bin", "stages/features.py"], ["work/features"]),
    "split": (["work/features", "stages/split.py"], ["work/train.bin", "work/test.bin"]),
    "train": (["work/train.bin", "stages/train.py"], ["models/model.bin"]),
    # a cached output (not `metrics: cache: false`): DVC's run cache never restores a stage with an
    # uncached output, mlops' does; the same cached output keeps the two on equal terms
    "evaluate": (["models/model.bin", "work/test.bin", "stages/evaluate.py"], ["metrics.json"]),
}
OUTPUTS = ("work/clean.bin", "work/features", "work/train.bin", "work/test.bin", "models/model.bin", "metrics.json")
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def pipeline_yaml(python: str) -> str:
    lines = ["stages:"]
    for name, (deps, outs) in STAGES.items():
        lines += [f"  {name}:", f"    cmd: {python} stages/{name}.py", f"    deps: [{', '.join(deps)}]"]
        lines.append(f"    outs: [{', '.join(outs)}]")
    return "\n".join(lines) + "\n"


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run once; wall-clock seconds; raise with the output's tail on failure."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}")
    return took


def children_cpu() -> float:
    """User + system CPU seconds of every finished child so far: what the tool's processes spent,
    moto's server apart (still running). Less sensitive to a loaded machine than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(work / "moto.log", "wb")  # noqa: SIM115 - the server's life
    env = {**os.environ, **AWS_ENV}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start (see {work / 'moto.log'})") from None
            time.sleep(0.2)
    return server, f"http://127.0.0.1:{port}"


def write_project(root: Path, data: Path) -> None:
    for rel, code in SCRIPTS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(code)
    (root / "data").mkdir(exist_ok=True)
    shutil.copyfile(data, root / "data" / "raw.bin")


def same_outputs(a: Path, b: Path) -> bool:
    for rel in OUTPUTS:
        pa, pb = a / rel, b / rel
        if pa.is_dir():
            names = sorted(p.name for p in pa.iterdir())
            if names != sorted(p.name for p in pb.iterdir()):
                return False
            if any((pa / n).read_bytes() != (pb / n).read_bytes() for n in names):
                return False
        elif pa.read_bytes() != pb.read_bytes():
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(REPO_ROOT / "bench-work"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=40)
    parser.add_argument("--no-dvc", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    # An installed mlops carries its bytecode, as DVC's venv does (pip compiles what it installs).
    # The tree measured here may not (PYTHONDONTWRITEBYTECODE, a stale __pycache__): each command
    # would then compile every module it imports afresh, a cost no installed tool pays.
    compileall.compile_dir(REPO_ROOT / "mlops", quiet=1)
    mlops = str(Path(python).with_name("mlops"))
    dvc = None
    if not args.no_dvc:
        exe, why = bench_data.install_dvc(work, python, "dvc[s3]")
        dvc = str(exe) if exe else None
        if dvc is None:
            print(f"DVC unavailable: {why}")
    base = Path(tempfile.mkdtemp(prefix="runcache-", dir=work))
    counter = base / "counter.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENV, BENCH_COUNTER=str(counter), DVC_NO_ANALYTICS="1", NO_COLOR="1")
    mlops_env = {**env, "PYTHONPATH": str(REPO_ROOT)}  # this tree's mlops
    os.environ.update(AWS_ENV)  # boto3 here talks to the moto server with the dummy credentials
    server, endpoint = start_moto(base)
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        buckets = {tool: f"bench-{tool}-{uuid.uuid4().hex[:8]}" for tool in ("mlops", "dvc")}
        for bucket in buckets.values():
            client.create_bucket(Bucket=bucket)
        data = base / "raw.bin"
        data.write_bytes(os.urandom(args.size_mb << 20))

        # --- the origins: run once, push with the run cache -----------------------------------
        origins: dict[str, Path] = {}
        origin = base / "origin-mlops"
        origin.mkdir()
        git(origin, "init", "-q", "-b", "main")
        run([mlops, "init"], origin, mlops_env)
        url = f"s3://{buckets['mlops']}/store"
        run([mlops, "remote", "add", "team", url, "--default", "--endpoint-url", endpoint], origin, mlops_env)
        write_project(origin, data)
        (origin / "pipeline.yaml").write_text(pipeline_yaml(python))
        run([mlops, "add", "data/raw.bin"], origin, mlops_env)
        git(origin, "add", "-A")
        git(origin, "commit", "-qm", "project")
        took = run([mlops, "run"], origin, mlops_env)
        print(f"mlops: first run of the 5 stages took {took:.1f} s")
        run([mlops, "push", "--run-cache"], origin, mlops_env)
        origins["mlops"] = origin
        if dvc:
            origin = base / "origin-dvc"
            origin.mkdir()
            git(origin, "init", "-q", "-b", "main")
            run([dvc, "init", "-q"], origin, env)
            run([dvc, "config", "core.analytics", "false"], origin, env)
            run([dvc, "remote", "add", "-d", "team", f"s3://{buckets['dvc']}/store"], origin, env)
            run([dvc, "remote", "modify", "team", "endpointurl", endpoint], origin, env)
            write_project(origin, data)
            (origin / "dvc.yaml").write_text(pipeline_yaml(python))
            run([dvc, "add", "-q", "data/raw.bin"], origin, env)
            git(origin, "add", "-A")
            git(origin, "commit", "-qm", "project")
            took = run([dvc, "repro", "-q"], origin, env)
            print(f"dvc:   first run of the 5 stages took {took:.1f} s")
            run([dvc, "push", "-q", "--run-cache"], origin, env)
            origins["dvc"] = origin
        executed = counter.read_text().split()
        assert len(executed) == 5 * len(origins), executed

        # --- rounds: a teammate's fresh clone, both tools alternating -------------------------
        times: dict[str, list[float]] = {tool: [] for tool in origins}
        cpus: dict[str, list[float]] = {tool: [] for tool in origins}
        commands = {
            "mlops": ([mlops, "pull", "--run-cache"], [mlops, "run"], mlops_env),
            # see the docstring: the data file named, and `repro --pull` (else every stage runs)
            "dvc": (
                [str(dvc), "pull", "-q", "--run-cache", "data/raw.bin.dvc"],
                [str(dvc), "repro", "-q", "--pull"],
                env,
            ),
        }
        for index in range(args.rounds):
            order = list(origins) if index % 2 == 0 else list(reversed(origins))
            for tool in order:
                mate = base / f"mate-{tool}-{index}"
                git(base, "clone", "-q", str(origins[tool]), str(mate))
                pull, repro, tool_env = commands[tool]
                subprocess.run(["sync"], check=False)
                before = counter.read_text()
                cpu_before = children_cpu()
                took = run(pull, mate, tool_env) + run(repro, mate, tool_env)
                cpu = children_cpu() - cpu_before
                if counter.read_text() != before:
                    raise RuntimeError(
                        f"{tool}: a stage ran in the teammate's clone: {counter.read_text()[len(before) :]}"
                    )
                if not same_outputs(origins[tool], mate):
                    raise RuntimeError(f"{tool}: the teammate's outputs differ from the origin's")
                if (
                    tool == "mlops"
                    and (mate / "pipeline.lock").read_text() != (origins[tool] / "pipeline.lock").read_text()
                ):
                    raise RuntimeError("mlops: the teammate's pipeline.lock differs from the origin's")
                times[tool].append(took)
                cpus[tool].append(cpu)
                print(
                    f"round {index + 1}: {tool:5s} pull --run-cache + run/repro: {took:6.2f} s, "
                    f"CPU {cpu:5.2f} s (nothing ran)"
                )
                shutil.rmtree(mate)

        print()
        print(f"data {args.size_mb} MB, 5 stages, {args.rounds} rounds, S3 = moto on 127.0.0.1")
        for tool, values in times.items():
            print(
                f"{tool:5s} best {min(values):6.2f} s  median {statistics.median(values):6.2f} s  "
                f"(CPU of its processes: median {statistics.median(cpus[tool]):5.2f} s)"
            )
        if "dvc" in times:
            best = min(times["dvc"]) / min(times["mlops"])
            median = statistics.median(times["dvc"]) / statistics.median(times["mlops"])
            verdict = "PASS" if median >= 3 else "FAIL"
            print(f"ratio dvc/mlops: best {best:.1f}x, median {median:.1f}x (target >= 3x): {verdict}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
