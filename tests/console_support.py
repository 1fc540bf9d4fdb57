"""The county console from a test: a Flask test client signed in as a console user, the
CSRF token of a page, a page that must answer 200; and the county office's desktop page
in the test browser, signed in."""

import re

import pytest

PASSWORD = "correct horse 42"  # every test console user's


def token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def signed_in(app, username: str):
    client = app.test_client()
    page = client.get("/console/login").get_data(as_text=True)
    answer = client.post(
        "/console/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token(page)},
    )
    assert answer.status_code == 302
    return client


def page(client, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_data(as_text=True)


@pytest.fixture
def desk(browser):
    """The county office's screen: a desktop page of the test browser, zh-CN."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    desktop = context.new_page()
    desktop.set_default_timeout(30_000)
    yield desktop
    context.close()


def console_sign_in(desk, hub_url: str, username: str, password: str = PASSWORD) -> None:
    desk.goto(f"{hub_url}/console/login")
    desk.fill("input[name=username]", username)
    desk.fill("input[name=password]", password)
    with desk.expect_navigation():
        desk.click("button[type=submit]")
