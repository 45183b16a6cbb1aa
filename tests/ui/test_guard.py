"""Only the person with the printed link drives a page: 403 without the token, another
site's POST refused, nothing listening beyond 127.0.0.1 (a real ``nfcpay ui`` process)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.cli import Cli
from tests.support.ui import UiProcess, csrf_of, signed_in, start_ui


@pytest.fixture
def counter(cli: Cli) -> Iterator[UiProcess]:
    cli.init("shop", "merchant")
    page = start_ui(cli, "shop", device="loopback:1")
    yield page
    page.stop()


@pytest.mark.parametrize("path", ["/", "/events", "/static/ui.js", "/?token=wrong"])
def test_a_page_without_its_token_is_403(counter: UiProcess, path: str) -> None:
    answer = httpx.get(counter.base + path)
    assert answer.status_code == 403
    assert "needs the link `nfcpay ui` printed" in answer.text
    assert counter.token not in answer.text


def test_the_link_sets_a_cookie_that_opens_the_page(counter: UiProcess) -> None:
    with signed_in(counter) as client:
        page = client.get("/")
    assert page.status_code == 200
    assert "Ready" in page.text and "shop" in page.text
    assert counter.token not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def post_charge(client: httpx.Client, headers: dict[str, str], form: dict[str, str]) -> int:
    return client.post("/charge", data=form, headers=headers).status_code


def test_a_cross_site_post_is_refused_and_changes_nothing(counter: UiProcess) -> None:
    with signed_in(counter) as client:
        csrf = csrf_of(client.get("/").text)
        form = {"amount": "12000", "csrf": csrf}
        assert post_charge(client, {"origin": "https://evil.example"}, form) == 403
        assert post_charge(client, {"sec-fetch-site": "cross-site"}, form) == 403
        assert (
            post_charge(client, {"origin": counter.base, "sec-fetch-site": "same-site"}, form)
            == 403
        )
        assert post_charge(client, {}, form) == 403  # neither Origin nor Sec-Fetch-Site
        assert post_charge(client, {"origin": counter.base}, {"amount": "12000"}) == 403
        wrong = {"amount": "12000", "csrf": csrf[:-1] + "x"}
        assert post_charge(client, {"origin": counter.base}, wrong) == 403
        assert "Ready" in client.get("/").text  # no charge started
        refused = client.put("/charge", headers={"origin": counter.base})
        assert refused.status_code == 405


def test_a_same_origin_post_with_the_csrf_token_is_taken(counter: UiProcess) -> None:
    with signed_in(counter) as client:
        csrf = csrf_of(client.get("/").text)
        bad = {"amount": "12.5", "csrf": csrf}
        assert post_charge(client, {"origin": counter.base}, bad) == 303
        assert "KRW has no minor unit" in client.get("/").text


#: Every action the pages added after the counter's, with a form that would change something
#: were it taken: refused alike from another site, without the CSRF token or the cookie.
ACTIONS = [
    ("user", "/send", {"to": "t_0000000000000000", "amount": "1000"}),
    ("target", "/inbox/receive", {}),
    ("target", "/inbox/d_0000000000000000/receive", {}),
]


@pytest.mark.parametrize(("role", "path", "form"), ACTIONS)
def test_every_action_is_refused_from_another_site_or_without_its_tokens(
    cli: Cli, role: str, path: str, form: dict[str, str]
) -> None:
    cli.init("me", role)
    page = start_ui(cli, "me")
    with signed_in(page) as client:
        csrf = csrf_of(client.get("/").text)
        signed = {**form, "csrf": csrf}
        for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}, {}):
            assert client.post(path, data=signed, headers=headers).status_code == 403
        assert client.post(path, data=form, headers={"origin": page.base}).status_code == 403
        unchanged = client.get("/").text
    cookieless = httpx.post(page.base + path, data=signed, headers={"origin": page.base})
    assert cookieless.status_code == 403
    page.stop()
    assert "flash error" not in unchanged  # nothing was even tried


def test_a_post_without_the_cookie_is_403_even_with_the_csrf_token(counter: UiProcess) -> None:
    with signed_in(counter) as client:
        csrf = csrf_of(client.get("/").text)
    answer = httpx.post(
        counter.base + "/charge",
        data={"amount": "1000", "csrf": csrf},
        headers={"origin": counter.base},
    )
    assert answer.status_code == 403


def test_only_127_0_0_1_answers(counter: UiProcess) -> None:
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", counter.port), timeout=5).close()
    rebound = httpx.get(
        counter.link.replace("127.0.0.1", "localhost"), headers={"host": "evil.example"}
    )
    assert rebound.status_code == 403


def test_the_token_is_never_logged(counter: UiProcess) -> None:
    with signed_in(counter) as client:
        client.get("/")
    httpx.get(counter.base + "/?token=wrong")
    done = counter.stop()
    assert counter.token not in done.stderr


def test_the_labels_are_korean_with_lang_ko(cli: Cli) -> None:
    cli.init("shop", "merchant")
    page = start_ui(cli, "shop", "--lang", "ko", device="loopback:1")
    with signed_in(page) as client:
        html = client.get("/").text
    page.stop()
    assert '<html lang="ko">' in html and "준비됨" in html and "결제 요청" in html
