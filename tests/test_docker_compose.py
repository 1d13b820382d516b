"""docker/compose.yaml: valid for the compose CLI when one is installed, and what it promises."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def compose_cli() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose`` (v1), whichever works."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli in candidates:
        try:
            proc = subprocess.run([*cli, "version"], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if proc.returncode == 0:
            return cli
    return None


@pytest.fixture(scope="module")
def cli() -> list[str]:
    found = compose_cli()
    if found is None:
        reason = "no compose CLI: neither `docker compose` nor `docker-compose` works here"
        print(reason)
        pytest.skip(reason)
    return found


def run_config(cli: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "QDRANT_API_KEY"} | env
    return subprocess.run(
        [*cli, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )


def test_compose_config_is_valid(cli: list[str]) -> None:
    proc = run_config(cli, QDRANT_API_KEY="test-key")
    assert proc.returncode == 0, proc.stderr
    rendered = yaml.safe_load(proc.stdout)
    assert set(rendered["services"]) == {"qdrant", "ingest"}
    env = rendered["services"]["qdrant"]["environment"]
    assert env["QDRANT__SERVICE__API_KEY"] == "test-key"


def test_compose_config_requires_the_api_key(cli: list[str]) -> None:
    proc = run_config(cli)
    assert proc.returncode != 0 and "QDRANT_API_KEY" in proc.stderr


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_qdrant_image_is_pinned(compose: dict) -> None:
    image = compose["services"]["qdrant"]["image"]
    assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", image), image


def test_storage_is_a_named_volume(compose: dict) -> None:
    volumes = compose["services"]["qdrant"]["volumes"]
    assert "qdrant_storage:/qdrant/storage" in volumes
    assert "qdrant_storage" in compose["volumes"]


def test_api_key_comes_from_the_environment(compose: dict) -> None:
    required = "${QDRANT_API_KEY:?set QDRANT_API_KEY}"
    assert compose["services"]["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"] == required
    ingest_env = compose["services"]["ingest"]["environment"]
    assert ingest_env["POEMRAG_QDRANT_API_KEY"] == required
    assert ingest_env["POEMRAG_QDRANT_URL"] == "http://qdrant:6333"


def test_rest_and_grpc_ports(compose: dict) -> None:
    ports = {str(p).rsplit(":", 1)[-1] for p in compose["services"]["qdrant"]["ports"]}
    assert ports == {"6333", "6334"}


def test_healthcheck_probes_readiness(compose: dict) -> None:
    check = compose["services"]["qdrant"]["healthcheck"]
    assert check["test"][0] == "CMD-SHELL" and "/readyz" in check["test"][1]
    assert check["retries"] >= 3 and "interval" in check


def test_ingest_waits_for_a_healthy_server(compose: dict) -> None:
    ingest = compose["services"]["ingest"]
    assert ingest["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert ingest["build"]["dockerfile"] == "docker/Dockerfile"
    assert (COMPOSE.parent / ingest["build"]["context"] / ingest["build"]["dockerfile"]).is_file()


def test_dockerfile_installs_the_package_without_torch() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.1[12]-slim$", text, re.MULTILINE)
    assert "COPY poemrag ./poemrag" in text
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and not any("[" in line for line in installs)  # no extras: no torch
    assert 'ENTRYPOINT ["python", "-m"]' in text
