"""The web UI tests' fixtures, loaded as a plugin by each tests/test_web_*.py module
(`pytest_plugins = ["web_fixtures"]`): a demo device copied per test, the app on it with
a hand-moved clock, its test client and an auth helper."""

import shutil
from pathlib import Path

import pytest
from web_support import Auth, FakeClock, app_config, make_demo_device


@pytest.fixture(scope="session")
def web_template(tmp_path_factory) -> Path:
    """A demo device prepared once (migrated, diagnoses loaded, demo PINs); copied per test."""
    from web_ui.app import create_app

    data_dir = tmp_path_factory.mktemp("web-template") / "device"
    make_demo_device(data_dir)
    create_app(app_config(data_dir, FakeClock()))
    return data_dir


@pytest.fixture
def web_dir(web_template: Path, tmp_path: Path) -> Path:
    target = tmp_path / "device"
    shutil.copytree(web_template, target)
    return target


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(web_dir: Path, clock: FakeClock):
    from web_ui.app import create_app

    return create_app(app_config(web_dir, clock))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth(client) -> Auth:
    return Auth(client)


@pytest.fixture
def doctor(auth) -> Auth:
    auth.sign_in("doc01")
    return auth
