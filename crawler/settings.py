"""Scrapy settings: the project defaults below, and `build_settings` mapping `[crawl]` onto them.

The module-level names are what `scrapy` itself reads (scrapy.cfg points here), so
`scrapy crawl site -a urls=...` from the crawler/ folder runs the same spider with defaults.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.config import CrawlConfig

BOT_NAME = "cllm"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
TWISTED_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
TWISTED_DNS_RESOLVER = "crawler.middlewares.GuardedResolver"
REQUEST_FINGERPRINTER_CLASS = "crawler.fingerprint.UrlFingerprinter"
DOWNLOADER = "crawler.downloader.SlotLimitedDownloader"  # per-domain concurrency that holds

# politeness and safety that hold whatever the config says
ROBOTSTXT_OBEY = True
COOKIES_ENABLED = False  # stateless: no session traps, no cookie jars growing per site
TELNETCONSOLE_ENABLED = False  # no listening ports in a crawler
REMOTE_CONTROL_ENABLED = False
HTTPERROR_ALLOW_ALL = True  # the spider sees 4xx/5xx and records each as a failure
DEPTH_LIMIT = 0  # depth is enforced (and counted) by the spider
DEPTH_PRIORITY = 1  # breadth first, with FIFO queues: a page budget keeps the nearest pages
SCHEDULER_DISK_QUEUE = "crawler.queues.FifoSavedQueue"  # in memory, saved on a stop
SCHEDULER_START_DISK_QUEUE = "crawler.queues.FifoSavedQueue"  # a re-crawl's kept pages
SCHEDULER_MEMORY_QUEUE = "scrapy.squeues.FifoMemoryQueue"
URLLENGTH_LIMIT = 0  # crawler.urls refuses long URLs with a counted reason
DOWNLOAD_WARNSIZE = 0
DOWNLOADER_STATS = False  # it renders every request as raw HTTP to count bytes; we count pages
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
# a response yields one item and a few requests: Scrapy's default of 100 starts 100 asyncio
# tasks per response to process them, which costs more than the page itself
CONCURRENT_ITEMS = 4
# Scrapy parses the source of a generator callback (inspect, ast) to warn of a `return value`
# in it, caching by the callable: a bound method is a new object for every request, so the
# cache never hit and every response paid for a parse; our callbacks return no value
WARN_ON_GENERATOR_RETURN_VALUE = False
LOG_LEVEL = "WARNING"
LOG_INSTALL_ROOT_HANDLER = False  # the crawl process logs through our handler (crawler.child)
STATS_DUMP = False

DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,  # the guard does this
    "crawler.middlewares.GuardMiddleware": 50,
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,  # RFC 9309 instead:
    "crawler.robots.RobotsMiddleware": 100,
    "crawler.middlewares.RawStoreMiddleware": 80,
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.BackoffRetryMiddleware": 550,
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "crawler.middlewares.SafeMetaRefreshMiddleware": 580,
    "scrapy.downloadermiddlewares.redirect.RedirectMiddleware": None,
    "crawler.middlewares.SafeRedirectMiddleware": 600,
}
SPIDER_MIDDLEWARES = {
    "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware": None,  # our meta is ours
}
ITEM_PIPELINES = {"crawler.pipelines.RawStorePipeline": 300}
EXTENSIONS = {
    "scrapy.extensions.throttle.AutoThrottle": None,
    "crawler.extensions.PoliteThrottle": 0,
    "crawler.extensions.CrawlReporter": 10,
    "crawler.extensions.DiskGuard": 5,
}

# Scrapy's components that the settings above switch off, left out of its base lists: Scrapy
# imports a component's module before the component finds itself disabled (and so does a None
# in DOWNLOADER_MIDDLEWARES or EXTENSIONS), and the cookies middleware imports tldextract and
# requests, the remote control aiohttp: about 0.1 s of every crawl process's start
UNUSED_COMPONENTS = {
    "DOWNLOADER_MIDDLEWARES_BASE": (
        "scrapy.downloadermiddlewares.cookies.CookiesMiddleware",  # COOKIES_ENABLED
        "scrapy.downloadermiddlewares.stats.DownloaderStats",  # DOWNLOADER_STATS
    ),
    "EXTENSIONS_BASE": (
        "scrapy.extensions.telnet.TelnetConsole",  # TELNETCONSOLE_ENABLED
        "scrapy.extensions.remote_control.RemoteControl",  # REMOTE_CONTROL_ENABLED
    ),
}

REDIS_SCHEDULER = "crawler.frontier.RedisFrontierScheduler"
REDIS_DUPEFILTER = "crawler.frontier.RedisFrontierDupeFilter"

RETRY_BACKOFF_MAX_S = 60.0  # cap on one wait before a retry (also on Retry-After)


def drop_unused_components(settings: Any) -> None:
    """Take UNUSED_COMPONENTS out of a scrapy Settings' base lists (before a crawler is made)."""
    for name, unused in UNUSED_COMPONENTS.items():
        base = settings.getdict(name)
        settings.set(name, {k: v for k, v in base.items() if k not in unused}, priority="project")


def robots_agent(user_agent: str) -> str:
    """The product token robots.txt groups are matched against: 'cllm-crawler/0.1 (...)' ->
    'cllm-crawler'."""
    return user_agent.split("/", 1)[0].split()[0]


def scrapy_log_level(our_level: int) -> str:
    """Scrapy is quiet unless asked (-v): its errors duplicate our failure rows."""
    return "INFO" if our_level <= logging.DEBUG else "ERROR"


def build_settings(cfg: CrawlConfig, job_dir: str | None, *, redis_key: str = "",
                   log_level: int = logging.WARNING) -> dict[str, Any]:
    """Scrapy settings for one crawl run (on top of this module's defaults)."""
    s: dict[str, Any] = {
        "CLLM_CONFIGURED": True,
        "USER_AGENT": cfg.user_agent,
        "ROBOTSTXT_OBEY": cfg.obey_robots,
        "ROBOTSTXT_USER_AGENT": robots_agent(cfg.user_agent),
        "CONCURRENT_REQUESTS": cfg.concurrency,
        "CONCURRENT_REQUESTS_PER_DOMAIN": cfg.per_domain_concurrency,
        "DOWNLOAD_DELAY": cfg.delay_s,
        "AUTOTHROTTLE_ENABLED": cfg.autothrottle,
        "AUTOTHROTTLE_START_DELAY": cfg.delay_s,
        "AUTOTHROTTLE_MAX_DELAY": RETRY_BACKOFF_MAX_S,
        "DOWNLOAD_TIMEOUT": cfg.timeout_s,
        "DNS_TIMEOUT": cfg.timeout_s,
        "RETRY_TIMES": cfg.retries,
        "RETRY_BACKOFF_S": cfg.retry_backoff_s,
        "RETRY_BACKOFF_MAX_S": RETRY_BACKOFF_MAX_S,
        "DOWNLOAD_MAXSIZE": cfg.max_bytes,
        "LOG_LEVEL": scrapy_log_level(log_level),
        # read by GuardedResolver, which Scrapy builds before any spider exists
        "CLLM_ALLOW_PRIVATE": cfg.allow_private,
        "CLLM_PRIVATE_ALLOWLIST": list(cfg.private_allowlist),
    }
    if cfg.redis_url:
        # a shared frontier: the queue and seen-set live in Redis, under this job's keys
        s.update({
            "SCHEDULER": REDIS_SCHEDULER,
            "DUPEFILTER_CLASS": REDIS_DUPEFILTER,
            "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",
            "SCHEDULER_PERSIST": True,
            "SCHEDULER_QUEUE_KEY": f"{redis_key}:requests",
            "SCHEDULER_DUPEFILTER_KEY": f"{redis_key}:dupefilter",
            "REDIS_URL": cfg.redis_url,
            "CLLM_REDIS_KEY": redis_key,
            "EXTENSIONS": {**EXTENSIONS, "crawler.frontier.SharedFrontier": 20},
        })
    elif job_dir:
        s["JOBDIR"] = job_dir
    return s
