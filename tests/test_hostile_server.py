"""The crawler against hostile servers on 127.0.0.1 (crawler.localsite, raw answers from
tests/hostile.py): slow-loris, endless and lying bodies, bombs, redirect games, private
addresses, broken robots.txt, 429s and link traps. Each case is handled and counted (a
stored page, a refusal or a failure, with its reason) and the crawl ends within its budget.
The redirects and meta refreshes to this machine's other addresses all name one port, on
which a tripwire listens on every local address: it must hear nothing.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile import (
    Tripwire,
    chunked_body,
    declared_length,
    dribble,
    endless,
    gzip_bomb,
    not_http,
    own_addresses,
    silent,
)

from crawler.job import read_refused
from crawler.localsite import LocalSite, Page, Request, html, redirect
from crawler.run import crawl
from crawler.settings import RETRY_BACKOFF_MAX_S
from pipeline.config import build_config
from pipeline.failures import FailureLog
from pipeline.layout import DataRoot
from pipeline.rawstore import RawStore
from pipeline.stats import StageStats

# slow: the crawl runs in a child process; the timeout is a hang guard, not a speed test
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MAX_BYTES = 64 * 1024
TIMEOUT_S = 2.0
MAX_PAGES = 80  # more than the site holds within MAX_DEPTH: the traps must end by themselves
MAX_DEPTH = 5
OWN = own_addresses()  # this machine's other addresses (a container's, ...), none public
# redirect targets that must be refused after the redirect; {port} is the tripwire's
PRIVATE_TARGETS = {
    "/to-metadata": "http://169.254.169.254/latest/meta-data/",
    "/to-rfc1918": "http://10.0.0.1/admin",
    "/to-loopback-2": "http://127.0.0.2:{port}/",
    "/to-loopback-3": "http://127.0.0.3:{port}/",
    "/to-decimal-ip": "http://2130706434:{port}/",  # 127.0.0.2 spelled as one number
    "/to-hex-ip": "http://0x7f.0.0.2:{port}/",
    "/to-mapped-v6": "http://[::ffff:127.0.0.2]:{port}/",
    "/to-v6-loopback": "http://[::1]:{port}/",
    "/to-unspecified": "http://0.0.0.0:{port}/",
    **{f"/to-own-{i}": f"http://{a if ':' not in a else f'[{a}]'}:{{port}}/"
       for i, a in enumerate(OWN)},
}
REFRESH_TARGETS = {  # meta refresh (not a redirect) to private addresses
    "/refresh-private": "http://169.254.169.254/",
    "/refresh-loopback-2": "http://127.0.0.2:{port}/",
    "/refresh-v6-loopback": "http://[::1]:{port}/",
}
# the addresses the {port} targets reach: the tripwire must hear each one (else it proves
# nothing), but never from the crawler
TRIPWIRE_ADDRESSES = ["127.0.0.2", "127.0.0.3", "::ffff:127.0.0.2", "::1", "0.0.0.0", *OWN]
PRIVATE_HOSTS = ["169.254.169.254", "10.0.0.1", "127.0.0.2", "127.0.0.3", "2130706434",
                 "0x7f.0.0.2", "::ffff:127.0.0.2", "::ffff:7f00:2", "::1", "0.0.0.0", *OWN]
LONG_RETRY_AFTER_S = 3600
SECRET = b"<html><body>instance credentials</body></html>"


class Clock:
    """When each request for a path arrived (to check the waits Retry-After asked for)."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def __call__(self, status: int, retry_after: str | Callable[[], str],
                 times: int = 1):  # noqa: ANN204
        def answer(req: Request) -> Page:
            self.times.setdefault(req.path, []).append(time.monotonic())
            if req.hits <= times:
                value = retry_after() if callable(retry_after) else retry_after
                return Page(status=status, headers={"Retry-After": value},
                            body=b"busy", content_type="text/plain")
            return Page(body=html(f"Served at last: {req.path}"))

        return answer


def trap(req: Request) -> Page:
    """Endless link generators: a calendar, ever-deeper paths, session ids in URLs."""
    path, _, query = req.path.partition("?")
    if path == "/calendar":
        day = int(query.split("=")[1])
        return Page(body=html(f"Day {day}", [f"/calendar?day={day + 1}",
                                             f"/calendar?day={day - 1}"]))
    if path.startswith("/deeper"):  # a new segment each time: only the depth limit ends it
        return Page(body=html("Deeper", [f"{path}/{len(path)}"]))
    if path.startswith("/again"):  # the same segment again and again
        return Page(body=html("Again", [f"{path}/again"]))
    if path.startswith(("/shop", "/cart")):
        session = f"{time.monotonic_ns():x}"  # a new id on every visit, as such sites do
        return Page(body=html("Shop", [f"/shop/{i};jsessionid={session}" for i in range(3)]
                              + [f"/cart?PHPSESSID={session}&item=1"]))
    return Page(status=404, body=b"<html><body>not found</body></html>")


def hostile_routes(clock: Clock, tripwire_port: int) -> dict[str, object]:
    chain = {f"/chain/{i}": redirect(f"/chain/{i + 1}") for i in range(30)}
    short = {"/hop/1": redirect("/hop/2", 301), "/hop/2": redirect("/hop/3", 307),
             "/hop/3": Page(body=html("After three hops"))}
    def http_date(seconds: float) -> Callable[[], str]:
        return lambda: email.utils.formatdate(time.time() + seconds, usegmt=True)

    routes: dict[str, object] = {
        "/slow-body": Page(raw=dribble(5000, 0.3)),
        "/slow-head": Page(raw=silent),
        "/endless": Page(raw=endless),
        "/huge-length": Page(raw=declared_length(10 * 1024 ** 3, b"<html>")),
        "/gzip-bomb": Page(body=gzip_bomb(64 * MAX_BYTES), headers={"Content-Encoding": "gzip"}),
        "/short-length": Page(raw=declared_length(40, html("Short", text="x" * 400))),
        "/long-length": Page(raw=declared_length(9000, html("Long", text="cut short"))),
        "/not-http": Page(raw=not_http),
        "/loop-a": redirect("/loop-b"),
        "/loop-b": redirect("/loop-a"),
        "/self": redirect("/self"),
        "/to-file": redirect("file:///etc/passwd"),
        "/retry-once": clock(429, "1"),
        "/retry-date": clock(503, http_date(2)),  # whole seconds: a wait of 1 to 2 s
        "/retry-tomorrow": clock(429, http_date(86400), times=99),
        "/retry-seconds": clock(429, "86400", times=99),
        "/retry-hour": clock(503, str(LONG_RETRY_AFTER_S), times=99),
        **chain, **short,
    }
    for path, target in PRIVATE_TARGETS.items():
        routes[path] = redirect(target.format(port=tripwire_port))
    for path, target in REFRESH_TARGETS.items():
        url = target.format(port=tripwire_port)
        routes[path] = Page(body=html("Refresh", head='<meta http-equiv="refresh" '
                                      f'content="0; url={url}">'))
    links = [p for p in routes if not p.startswith(("/chain/", "/hop/", "/loop-b"))]
    routes["/"] = Page(body=html("Hostile home", [*links, "/chain/0", "/hop/1", "/calendar?day=0",
                                                  "/deeper", "/again", "/shop"]))
    return routes


ROBOTS = {  # robots.txt variants, each on a site of its own: what / and /page become
    "garbage": Page(body=bytes(range(256)) * 20 + b"\nUser-agent: *\nDisallow: /page\n",
                    content_type="text/plain"),
    "huge-streamed": Page(raw=chunked_body(b"User-agent: *\nDisallow: /page\n"
                                           + b"# filler line\n" * 150_000)),
    "huge-declared": Page(raw=declared_length(2 * 1024 ** 2, b"User-agent: *\n",
                                              "text/plain")),
    "http-500": Page(status=500, body=b"internal error"),
    "http-404": Page(status=404, body=b"<html>no robots here</html>"),
    "redirect-loop": redirect("/robots-b.txt"),
    "slow-loris": Page(raw=dribble(3000, 0.5)),
    "gzip-bomb": Page(body=gzip_bomb(4 * 1024 ** 2), content_type="text/plain",
                      headers={"Content-Encoding": "gzip"}),
}
# verdict per variant, and whether / and /page may be crawled
ROBOTS_VERDICTS = {
    "garbage": ("parsed", True, False), "huge-streamed": ("parsed", True, False),
    "huge-declared": ("unreachable", False, False), "http-500": ("unreachable", False, False),
    "http-404": ("unavailable", True, True), "redirect-loop": ("unavailable", True, True),
    "slow-loris": ("unreachable", False, False), "gzip-bomb": ("unreachable", False, False),
}


@dataclass(frozen=True, slots=True)
class Crawled:
    site: LocalSite
    robots: dict[str, LocalSite]
    stats: StageStats
    stored: dict[str, object]  # URL -> SourceRow
    failed: dict[str, object]  # URL -> Failure
    refused: dict[str, dict[str, object]]  # URL -> refused.jsonl row
    clock: Clock
    wall_s: float
    tripped: list[str]  # local addresses the tripwire heard a connection to during the crawl
    unheard: list[str]  # TRIPWIRE_ADDRESSES a test connection after the crawl did not reach


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory):
    root = DataRoot.at(tmp_path_factory.mktemp("hostile-server") / "data")
    clock = Clock()
    tripwire = Tripwire().start()
    site = LocalSite(hostile_routes(clock, tripwire.port), fallback=trap).start()
    robots = {}
    for name, answer in ROBOTS.items():
        robots[name] = LocalSite({"/robots.txt": answer, "/robots-b.txt": redirect("/robots.txt"),
                                  "/": Page(body=html(f"Robots {name}", ["/page"])),
                                  "/twin": Page(body=html(f"Twin of {name}")),
                                  "/page": Page(body=html(f"Page of {name}"))}).start()
    cfg = build_config([{"crawl": {
        "allow_private": False, "private_allowlist": ["127.0.0.1"], "delay_s": 0.0,
        "retry_backoff_s": 0.01, "retries": 1, "timeout_s": TIMEOUT_S,
        "max_bytes": MAX_BYTES, "max_pages": MAX_PAGES, "max_depth": MAX_DEPTH,
        "allowed_domains": ["127.0.0.1", *PRIVATE_HOSTS]}}])
    started = time.monotonic()
    try:
        # two start URLs per robots site: both wait on the one robots.txt request
        seeds = [site.url("/")] + [s.url(p) for s in robots.values() for p in ("/", "/twin")]
        stats = crawl(seeds, cfg, root, progress=False)
        wall_s = time.monotonic() - started
        tripped = list(tripwire.heard)
        # the tripwire hears each address (IPv6 ones where the machine has IPv6 at all)
        unheard = [a for a in TRIPWIRE_ADDRESSES
                   if (tripwire.ipv6 or ":" not in a) and not tripwire.reaches(a)]
    finally:
        tripwire.stop()
        for s in [site, *robots.values()]:
            s.stop()
    with RawStore(root) as store:
        stored = {r.source: r for r in store.iter_sources()}
    failed = {f.source: f for f in FailureLog(root.raw_failures).read()}
    refused = {r["url"]: r for r in read_refused(Path(stats.extra["refused_log"]))}
    return Crawled(site, robots, stats, stored, failed, refused, clock, wall_s, tripped,
                   unheard)


def outcome(c: Crawled, url: str) -> tuple[str, str]:
    """("stored"|"failed"|"refused", kind) of one URL, which must have exactly one."""
    found = [("stored", r.status) for u, r in c.stored.items() if u == url]
    found += [("failed", f.error) for u, f in c.failed.items() if u == url]
    found += [("refused", r["reason"]) for u, r in c.refused.items() if u == url]
    assert len(found) == 1, f"{url}: {found}"
    return found[0]


@pytest.mark.parametrize(("path", "expected"), [
    ("/slow-body", ("failed", "timeout")),
    ("/slow-head", ("failed", "timeout")),
    ("/endless", ("failed", "too_large")),
    ("/huge-length", ("failed", "too_large")),
    ("/gzip-bomb", ("failed", "too_large")),
    ("/long-length", ("failed", "data_loss")),
    ("/not-http", ("failed", "connection")),
    ("/loop-a", ("failed", "redirect_loop")),
    ("/self", ("failed", "redirect_loop")),
    ("/chain/0", ("failed", "too_many_redirects")),
    ("/retry-tomorrow", ("failed", "http_429")),
    ("/retry-seconds", ("failed", "http_429")),
    ("/retry-hour", ("failed", "http_503")),
    ("/to-file", ("failed", "http_302")),  # not followed: file:// is no URL we fetch
    *[(path, ("refused", "private_address")) for path in [*PRIVATE_TARGETS, *REFRESH_TARGETS]],
    ("/short-length", ("stored", "stored")),
    ("/hop/1", ("stored", "stored")),
    ("/retry-once", ("stored", "stored")),
    ("/retry-date", ("stored", "stored")),
])
def test_each_hostile_answer_is_handled_and_counted(crawled: Crawled, path: str,
                                                    expected: tuple[str, str]) -> None:
    assert outcome(crawled, crawled.site.url(path)) == expected


def test_reasons_say_what_happened(crawled: Crawled) -> None:
    url = crawled.site.url
    assert f"longer than {TIMEOUT_S} seconds" in crawled.failed[url("/slow-body")].message
    assert "during decompression" in crawled.failed[url("/gzip-bomb")].message
    assert " -> " in crawled.failed[url("/loop-a")].message  # the chain
    assert "file:///etc/passwd" in crawled.failed[url("/to-file")].message
    assert "Retry-After: 86400" in crawled.failed[url("/retry-seconds")].message
    assert "redirected from" in crawled.refused[url("/to-metadata")]["detail"]
    assert "127.0.0.2" in crawled.refused[url("/to-decimal-ip")]["detail"]
    # a page cut at its Content-Length is stored as declared, the rest ignored
    row = crawled.stored[url("/short-length")]
    assert row.size == 40
    assert crawled.stored[url("/hop/1")].final_url == url("/hop/3")


def test_no_private_address_was_contacted_and_nothing_leaked(crawled: Crawled) -> None:
    """The targets on the tripwire's port are other addresses of this machine: no
    connection reached any of them (the tripwire, on every local address, heard each one
    when the test itself connected). The metadata and RFC 1918 targets are not this
    machine's: their refusal rows (above) say they were refused before any connection."""
    assert crawled.unheard == []
    assert crawled.tripped == []
    hosts = {headers.get("host", "").rsplit(":", 1)[0] for _, headers in crawled.site.requests}
    assert hosts == {"127.0.0.1"}
    assert not any(SECRET in r.final_url.encode() for r in crawled.stored.values())


def test_retry_after_is_honoured_and_never_waited_on_for_long(crawled: Crawled) -> None:
    once = crawled.clock.times["/retry-once"]
    assert len(once) == 2 and once[1] - once[0] >= 0.9  # asked for 1 s
    dated = crawled.clock.times["/retry-date"]
    assert len(dated) == 2 and dated[1] - dated[0] >= 0.5
    # a day's or an hour's wait is more than the crawl waits (60 s): one request, a failure
    for path in ("/retry-tomorrow", "/retry-seconds", "/retry-hour"):
        assert len(crawled.clock.times[path]) == 1, path
    assert f"Retry-After: {LONG_RETRY_AFTER_S}" in crawled.failed[
        crawled.site.url("/retry-hour")].message
    # and nothing waited on them: the whole crawl ended before even the longest wait it
    # honours could have passed (an outcome bound, far under the hour asked for)
    assert crawled.wall_s < RETRY_BACKOFF_MAX_S < LONG_RETRY_AFTER_S


def test_link_traps_end_at_the_limits(crawled: Crawled) -> None:
    url = crawled.site.url
    stats = crawled.stats
    assert stats.units < MAX_PAGES and stats.extra["close_reason"] == "finished"
    calendar = [u for u in crawled.stored if "/calendar" in u]
    assert 0 < len(calendar) <= 2 * MAX_DEPTH  # a day forwards and one back per hop
    deeper = [u for u in crawled.stored if "/deeper" in u]
    assert len(deeper) == MAX_DEPTH  # /deeper at depth 1, then one more per hop
    again = [u for u in crawled.stored if "/again" in u]
    assert again == [url("/again" * n) for n in range(1, 4)]  # a 4th repeat is a trap
    assert stats.dropped["max_depth"] > 0 and stats.dropped["trap_repeated_path"] > 0
    # session ids are stripped, so every visit's links are the same few URLs
    shop = sorted(u for u in crawled.stored if "/shop" in u or "/cart" in u)
    assert shop == sorted([url("/shop"), url("/cart?item=1"),
                           *[url(f"/shop/{i}") for i in range(3)]])
    assert crawled.site.hits["/shop/0"] == 1


def test_robots_txt_failures_follow_rfc_9309(crawled: Crawled) -> None:
    verdicts = {}
    for name, site in crawled.robots.items():
        verdict, home_ok, page_ok = ROBOTS_VERDICTS[name]
        home, page = outcome(crawled, site.url("/")), site.url("/page")
        assert outcome(crawled, site.url("/twin")) == home
        assert (home[0] == "stored") is home_ok, (name, home)
        if home_ok:
            assert (page in crawled.stored) is page_ok, name
        else:
            assert home == ("failed", "robots_txt"), name  # a refused start URL is a failure
            assert "complete disallow" in crawled.failed[site.url("/")].message
            assert site.hits["/"] == site.hits["/page"] == site.hits["/twin"] == 0
        verdicts[name] = verdict
        host = site.url("/").split("/")[2]
        assert (host in crawled.stats.extra["robots_problems"]) is (verdict != "parsed")
    # the hostile site has no robots.txt (404): unavailable, everything allowed
    verdicts["hostile"] = "unavailable"
    assert crawled.stats.extra["robots"] == {v: list(verdicts.values()).count(v)
                                             for v in set(verdicts.values())}


def test_the_crawl_completes_and_counts_everything(crawled: Crawled) -> None:
    stats = crawled.stats
    assert stats.extra["close_reason"] in ("finished", "page_budget")
    assert not stats.extra["interrupted"]
    assert stats.n_failed == len(crawled.failed)
    assert sum(stats.dropped.values()) == len(crawled.refused)
    print(f"hostile crawl: {crawled.wall_s:.1f} s; {stats.summary()}")
