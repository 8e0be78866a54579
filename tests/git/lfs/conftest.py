"""Fixtures of the LFS integration tests (helpers: ``lfs_support.py``).

Session fixtures build the signed "world" once (a bare remote with signed,
tampered and unsigned branches) and start giftless, a real Git LFS server,
on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.git.lfs.lfs_support import (
    GIFTLESS_VENV,
    Giftless,
    World,
    base_env,
    build_world,
    free_port,
    mi,
    run,
)


@pytest.fixture(autouse=True)
def lfs_home(isolated_env: Path) -> Path:
    """git-lfs's filters in the per-test global config (as `git lfs install` leaves them)."""
    if shutil.which("git-lfs") is None:
        pytest.fail("git-lfs is not installed: run tests/tools/install.sh")
    run(["git", "lfs", "install", "--skip-repo"], isolated_env)
    return isolated_env


@pytest.fixture
def good(world: World, tmp_path: Path) -> Path:
    """A fresh `ml-integrity clone` of the world's signed main branch."""
    dest = tmp_path / "good"
    r = mi("clone", world.remote, dest, "--key", world.pub, cwd=tmp_path)
    assert r.returncode == 0, r.output
    return dest


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("lfs-world")
    env = base_env(root / "home")
    return build_world(root, env)


@pytest.fixture(scope="session")
def giftless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Giftless]:
    serve = GIFTLESS_VENV / "bin" / "waitress-serve"
    if not serve.exists():
        pytest.fail("giftless is not installed: run tests/tools/install.sh")
    root = tmp_path_factory.mktemp("giftless")
    storage = root / "storage"
    storage.mkdir()
    config = root / "giftless.yaml"
    config.write_text(
        "AUTH_PROVIDERS:\n  - giftless.auth.allow_anon:read_write\n"
        "LEGACY_ENDPOINTS: false\n"
        "PRE_AUTHORIZED_ACTION_PROVIDER:\n"
        "  options:\n    private_key: test-only-signing-key-that-is-long-enough-0123456789\n"
        "TRANSFER_ADAPTERS:\n  basic:\n"
        "    factory: giftless.transfer.basic_streaming:factory\n"
        "    options:\n"
        "      storage_class: giftless.storage.local_storage:LocalStorage\n"
        f"      storage_options:\n        path: {storage}\n"
    )
    port = free_port()
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [str(serve), f"--listen=127.0.0.1:{port}", "giftless.wsgi_entrypoint:app"],
        env={"GIFTLESS_CONFIG_FILE": str(config), "PATH": os.environ.get("PATH", "")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            req = urllib.request.Request(
                f"{url}/test/probe.git/info/lfs/objects/batch",
                data=b'{"operation":"download","objects":[]}',
                headers={
                    "Content-Type": "application/vnd.git-lfs+json",
                    "Accept": "application/vnd.git-lfs+json",
                },
            )
            urllib.request.urlopen(req, timeout=2).read()
            break
        except urllib.error.HTTPError:
            break  # it answers (422 for an empty batch)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail("giftless did not start:\n" + (root / "server.log").read_text())
            time.sleep(0.2)
    try:
        yield Giftless(url, storage)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def http_world(tmp_path_factory: pytest.TempPathFactory, giftless: Giftless) -> World:
    root = tmp_path_factory.mktemp("lfs-http-world")
    env = base_env(root / "home")
    return build_world(root, env, lfs_url=giftless.lfs_url("models"))
