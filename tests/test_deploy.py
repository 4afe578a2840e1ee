"""docker-compose.yml and the Dockerfile, checked by reading (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from worker.config import PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_names_the_services_of_a_deployment() -> None:
    services = _compose()["services"]
    assert {"redis", "postgres", "web", "worker", "scheduler"} <= set(services)
    for role in ("web", "worker", "scheduler"):
        assert services[role]["command"][0] == "newsletter"
        assert services[role]["command"][1] == role
        assert (
            services[role]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
    assert services["migrate"]["command"] == ["newsletter", "init"]


def test_every_variable_compose_sets_is_a_setting() -> None:
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    for name, service in _compose()["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith(PREFIX):
                assert variable in known, f"{name} sets unknown {variable}"
    environment = _compose()["x-newsletter"]["environment"]
    assert environment["NEWSLETTER_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert environment["NEWSLETTER_REDIS_URL"].startswith("redis://redis:")


def test_the_dockerfile_installs_the_package_and_its_templates() -> None:
    text = (ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (\S+)", text, re.MULTILINE)
    for needed in ("pyproject.toml", "worker", "templates"):
        assert needed in copied
    assert re.search(r"pip install .*-e \.", text)
    assert (ROOT / "templates" / "email" / "digest.mjml.j2").exists()
