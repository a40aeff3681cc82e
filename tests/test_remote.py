"""The project's S3 remote (`storage` in .dvc/config) through dvc-s3, against a local S3 server (moto).

A clone runs the `source` and `twins` stages, pushes their outputs and run-cache, and gets them back
three ways: `dvc pull` after wiping the cache and outputs; `dvc repro --pull` with dvc.lock gone too (only
the pushed run-cache can then say the stages need not run); and a fresh `git clone` plus `dvc pull`.
A refused connection, a connect that hangs and wrong credentials must fail within seconds with a clear
message and leave the local cache as it was; a server that accepts and never answers is bounded by the
knobs the README gives.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

from clone_fixture import commit, make_clone, sh

pytestmark = pytest.mark.slow  # the two stages, pushes, pulls and failures: about three minutes

BUCKET = "diffseg-dvc"  # the bucket of .dvc/config's url
TARGETS = ["source", "twins"]
OUTPUTS = ["data/source", "models/twins"]
# Bound for a failure to count as "within seconds". Measured on two shared cores, DVC's start-up included:
# 5-8 s for a refused connection or wrong credentials, 27 s for a connect that hangs (5 attempts of 3 s).
FAILS_WITHIN_S = 45
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               # Only the environment counts: no user config, no instance-metadata lookup (it waits for a timeout).
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
               "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def s3():
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


def _digests(repo: Path) -> dict[str, str]:
    """sha256 of every file under the outputs."""
    return {p.relative_to(repo).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for out in OUTPUTS for p in sorted((repo / out).rglob("*")) if p.is_file()}


def _cache_listing(repo: Path) -> dict[str, int]:
    cache = repo / ".dvc" / "cache"
    return {p.relative_to(cache).as_posix(): p.stat().st_size for p in cache.rglob("*") if p.is_file()}


def _locked(repo: Path) -> dict:
    """dvc.lock's entries of the target stages (the file also holds the rest of the pipeline's)."""
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: stages[name] for name in TARGETS}


def _wipe(repo: Path, lock: bool = False) -> None:
    shutil.rmtree(repo / ".dvc" / "cache")
    for out in OUTPUTS:
        shutil.rmtree(repo / out)
    if lock:
        (repo / "dvc.lock").unlink()


def _timed(args, repo, env, check=True):
    start = time.monotonic()
    run = sh(args, repo, env, check=check)
    return run, time.monotonic() - start


def _use_endpoint(repo: Path, env: dict, endpoint: str) -> None:
    sh(["dvc", "remote", "modify", "--local", "storage", "endpointurl", endpoint], repo, env)


@pytest.fixture(scope="module")
def pushed(s3, tmp_path_factory):
    dest, env = make_clone(tmp_path_factory.mktemp("remote") / "diffseg")
    env.update(CREDENTIALS)
    _use_endpoint(dest, env, s3)
    _, repro_s = _timed(["dvc", "repro", *TARGETS], dest, env)
    commit(dest, env, "source and twins")
    push, push_s = _timed(["dvc", "push", "--run-cache"], dest, env)
    print(f"\nremote: repro {repro_s:.1f}s, push --run-cache {push_s:.1f}s ({push.stdout.strip()})")
    return {"repo": dest, "env": env, "digests": _digests(dest), "push": push.stdout}


def test_config_declares_the_remote_without_secrets(pushed):
    repo, env = pushed["repo"], pushed["env"]
    settings = [line for line in (repo / ".dvc" / "config").read_text().splitlines() if not line.startswith("#")]
    assert "    url = s3://diffseg-dvc/cache" in settings and "    remote = storage" in settings
    assert not [s for s in settings if re.search(r"access_key|secret|endpointurl", s)]  # these stay local
    assert "endpointurl" in (repo / ".dvc" / "config.local").read_text()
    assert sh(["git", "check-ignore", ".dvc/config.local"], repo, env).returncode == 0


def test_pull_restores_byte_identical_and_runs_nothing(pushed):
    repo, env = pushed["repo"], pushed["env"]
    assert re.search(r"\d+ files? pushed", pushed["push"]), pushed["push"]
    _wipe(repo)
    pull, pull_s = _timed(["dvc", "pull", *TARGETS], repo, env)
    print(f"\nremote: pull {pull_s:.1f}s ({pull.stdout.strip().splitlines()[-1]})")
    assert _digests(repo) == pushed["digests"]
    assert "up to date" in sh(["dvc", "status", *TARGETS], repo, env).stdout
    repro = sh(["dvc", "repro", *TARGETS], repo, env).stdout
    assert "Running stage" not in repro, repro


def test_repro_pull_restores_from_the_pushed_run_cache(pushed):
    """No dvc.lock and no local cache: only the remote run-cache can tell DVC the stages need not run."""
    repo, env = pushed["repo"], pushed["env"]
    committed_lock = _locked(repo)
    _wipe(repo, lock=True)
    repro, repro_s = _timed(["dvc", "repro", "--pull", *TARGETS], repo, env)
    print(f"\nremote: repro --pull from the run-cache {repro_s:.1f}s")
    assert "Running stage" not in repro.stdout, repro.stdout
    assert repro.stdout.count("is cached - skipping run") == len(TARGETS), repro.stdout
    assert _digests(repo) == pushed["digests"]
    assert _locked(repo) == committed_lock  # the restored stages are recorded as they were run


def test_fresh_clone_and_pull_is_clean(pushed, s3, tmp_path):
    repo, env = pushed["repo"], pushed["env"]
    fresh = tmp_path / "fresh"
    sh(["git", "clone", "-q", str(repo), str(fresh)], tmp_path, env)
    _use_endpoint(fresh, env, s3)  # config.local is not cloned: each clone names its endpoint
    pull, pull_s = _timed(["dvc", "pull", *TARGETS], fresh, env)
    print(f"\nremote: fresh clone pull {pull_s:.1f}s")
    assert _digests(fresh) == pushed["digests"]
    status = sh(["dvc", "status", *TARGETS], fresh, env).stdout
    assert "Data and pipelines are up to date." in status, status
    assert sh(["git", "status", "--porcelain"], fresh, env).stdout == ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Endpoint:
    """A local TCP endpoint that fails in one of two ways.

    ``blackhole``: a full accept queue, so the kernel drops new SYNs and a connect hangs, as with a
    firewalled or unrouted host. ``silent``: connections are accepted and never answered, as with a hung
    server.
    """

    def __init__(self, kind: str):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        if kind == "blackhole":
            self.conns.append(socket.create_connection(("127.0.0.1", self.port)))  # fills the queue
        else:
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


def _fails_fast(repo, env, command, expected: str, within_s: float = FAILS_WITHIN_S) -> float:
    before = _cache_listing(repo)
    run, elapsed = _timed(command, repo, env, check=False)
    message = run.stdout + run.stderr
    error = next((line for line in message.splitlines() if line.startswith("ERROR")), message.strip()[-300:])
    print(f"\nremote: {' '.join(command)} failed after {elapsed:.1f}s: {error}")
    assert run.returncode != 0, message
    assert elapsed < within_s, (elapsed, message)
    assert re.search(expected, error), message
    assert _cache_listing(repo) == before  # nothing removed or half-written
    return elapsed


PUSH_PULL_FETCH = [["dvc", "push"], ["dvc", "pull", "--force", *TARGETS], ["dvc", "fetch", "--run-cache", *TARGETS]]


@pytest.mark.parametrize("command", PUSH_PULL_FETCH, ids=["push", "pull", "fetch-run-cache"])
def test_refused_endpoint_fails_within_seconds(pushed, s3, command):
    repo, env = pushed["repo"], pushed["env"]
    _use_endpoint(repo, env, f"http://127.0.0.1:{_free_port()}")
    try:
        _fails_fast(repo, env, command, r"Could not connect to the endpoint URL")
    finally:
        _use_endpoint(repo, env, s3)
    assert _digests(repo) == pushed["digests"]


def test_unanswered_connect_fails_within_seconds(pushed, s3):
    """connect_timeout (3 s in .dvc/config) bounds each attempt; botocore makes a few attempts."""
    repo, env = pushed["repo"], pushed["env"]
    blackhole = _Endpoint("blackhole")
    _use_endpoint(repo, env, f"http://127.0.0.1:{blackhole.port}")
    try:
        _fails_fast(repo, env, ["dvc", "pull", "--force", *TARGETS], r"Connect timeout on endpoint URL")
    finally:
        blackhole.close()
        _use_endpoint(repo, env, s3)
    assert _digests(repo) == pushed["digests"]


def test_hung_server_is_bounded_by_read_timeout_and_retries(pushed, s3):
    """A server that accepts and never answers costs read_timeout x botocore attempts x s3fs's 5 tries.

    With .dvc/config's 10 s and botocore's 5 attempts that is minutes; the README's knobs cut it: here
    read_timeout 2 (config.local) and AWS_MAX_ATTEMPTS=1 (environment) give 5 tries of 2 s.
    """
    repo, env = pushed["repo"], pushed["env"]
    silent = _Endpoint("silent")
    _use_endpoint(repo, env, f"http://127.0.0.1:{silent.port}")
    sh(["dvc", "remote", "modify", "--local", "storage", "read_timeout", "2"], repo, env)
    try:
        _fails_fast(repo, dict(env, AWS_MAX_ATTEMPTS="1"), ["dvc", "push"], r"Read timeout on endpoint URL")
    finally:
        silent.close()
        sh(["dvc", "remote", "modify", "--local", "--unset", "storage", "read_timeout"], repo, env)
        _use_endpoint(repo, env, s3)


def test_wrong_credentials_fail_within_seconds(pushed, s3):
    """moto checks signatures once its IAM emulation is on: a real key works, a wrong secret is refused."""
    repo, env = pushed["repo"], pushed["env"]
    iam = boto3.client("iam", endpoint_url=s3, aws_access_key_id="testing", aws_secret_access_key="testing",
                       region_name="us-east-1")
    iam.create_user(UserName="ci")
    iam.put_user_policy(UserName="ci", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="ci")["AccessKey"]
    _set_auth(s3, 0)
    try:
        good = dict(env, AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        assert "Everything is up to date" in sh(["dvc", "push"], repo, good).stdout
        wrong = dict(good, AWS_SECRET_ACCESS_KEY="not-the-secret")
        _fails_fast(repo, wrong, ["dvc", "push"], r"SignatureDoesNotMatch|403|Forbidden")
        unknown = dict(good, AWS_ACCESS_KEY_ID="AKIANOTAKEY000000000")
        _fails_fast(repo, unknown, ["dvc", "pull", "--force", *TARGETS], r"InvalidAccessKeyId|403|Forbidden")
    finally:
        _set_auth(s3, float("inf"))


def _set_auth(endpoint: str, unauthenticated_requests: float) -> None:
    """moto's switch: after this many requests, every request must be signed by a known IAM key."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=str(unauthenticated_requests).encode(),
                                     method="POST", headers={"Content-Type": "text/plain"})  # not a form
    urllib.request.urlopen(request, timeout=10).read()
