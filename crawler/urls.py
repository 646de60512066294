"""URL normalisation and the crawl's URL policy: which URLs we may request, and if not, why.

Pure Python (no Scrapy), cheap enough to run on every extracted link: the spider checks links
here before it makes a Request, and the guard middleware checks every request (start URLs,
redirects) again. Each refusal is a reason string from `Reason`, counted by the crawl.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlsplit, urlunsplit

from pipeline.config import CrawlConfig
from pipeline.errors import ConfigError
from pipeline.sniff import ASSET_SUFFIXES

MAX_URL_CHARS = 2048  # longer URLs are almost always session ids or generated traps
MAX_SEGMENT_REPEATS = 3  # /a/b/a/b/a/b/a: a path segment seen more often is a loop trap
DEFAULT_PORTS = {"http": 80, "https": 443}
SKIPPED_SCHEMES = ("javascript:", "mailto:", "tel:", "data:", "about:", "#")
# characters that may stay unescaped in a URL path/query (RFC 3986 unreserved + sub-delims)
_SAFE = "/:@!$&'()*+,;=-._~%?"


class Reason:
    """Why a URL was refused (the names counted in a crawl's summary)."""

    SCHEME = "scheme"  # not http/https
    BAD_URL = "bad_url"
    OFFSITE = "offsite"  # host outside the allowed domains
    DENIED_DOMAIN = "denied_domain"
    EXCLUDED = "excluded_pattern"
    BLOCKLISTED = "blocklisted"
    FILE_TYPE = "file_type"  # by extension, Content-Type or content: not a kept kind
    UNSUPPORTED = "unsupported_type"  # bytes that are no kind we know
    URL_TOO_LONG = "url_too_long"
    TRAP = "trap_repeated_path"
    MAX_DEPTH = "max_depth"
    DOMAIN_CAP = "domain_cap"
    PAGE_BUDGET = "page_budget"
    PRIVATE = "private_address"
    ROBOTS = "robots_txt"
    NOINDEX = "robots_noindex"


# URL suffixes that tell the kind before fetching; links to other known-binary suffixes are
# refused unfetched. Suffixes not listed (.html, .php, none) are fetched and sniffed.
SUFFIX_KINDS = {
    ".pdf": "pdf", ".txt": "txt", ".md": "md", ".markdown": "md", ".png": "png",
    ".jpg": "jpg", ".jpeg": "jpg", ".gif": "gif", ".tif": "tif", ".tiff": "tif",
    ".bmp": "bmp", ".webp": "webp", ".epub": "epub",
}
UNWANTED_SUFFIXES = frozenset(
    "7z 7zip bz2 rar tar tgz gz xz zip zst jar war apk dmg iso img bin exe msi deb rpm "
    "mng pct pst psp ai drw dxf eps ps svg cdr ico heic avif "
    "mp3 wma ogg wav ra aac mid au aiff flac m4a opus "
    "3gp asf asx avi mov mp4 mpg mpeg qt rm swf wmv m4v webm mkv flv "
    "css js mjs map json xml rss atom csv tsv woff woff2 ttf otf eot "
    "xls xlsx ppt pptx doc docx odt ods odg odp pps rtf sqlite db pkl pt npy npz parquet".split()
) | ASSET_SUFFIXES  # the static web assets local ingest skips (pipeline/sniff.py)


def _query_param_matcher(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(p.lower()) for p in patterns))


def _encode_host(host: str) -> str:
    if host.isascii():
        return host.lower()
    return host.encode("idna").decode("ascii").lower()


def _escape(part: str) -> str:
    """Percent-encode what a URL may not hold raw (spaces, non-ASCII); keep existing escapes."""
    if part.isascii() and " " not in part and '"' not in part and "<" not in part:
        return part
    return quote(part, safe=_SAFE)


@dataclass(frozen=True, slots=True)
class Normalizer:
    """Canonical form of a URL: lower-case scheme and host, no default port, no fragment,
    no tracking parameters, escaped path. Parameter order is kept (servers may care)."""

    strip: re.Pattern[str] | None

    @classmethod
    def from_config(cls, cfg: CrawlConfig) -> Normalizer:
        return cls(_query_param_matcher(cfg.strip_params))

    def __call__(self, url: str) -> str | None:
        """The normal form, or None when `url` is not an http(s) URL we can request."""
        try:
            parts = urlsplit(url.strip())
            scheme = parts.scheme.lower()
            if scheme not in DEFAULT_PORTS or not parts.hostname:
                return None
            host = _encode_host(parts.hostname)
            port = parts.port
        except (ValueError, UnicodeError):
            return None
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
        query = self._strip_query(parts.query) if parts.query else ""
        path = self._strip_path_params(parts.path) if ";" in parts.path else parts.path
        return urlunsplit((scheme, netloc, _escape(path) or "/", _escape(query), ""))

    def _strip_path_params(self, path: str) -> str:
        """Drop matching path parameters: /a;jsessionid=XYZ/b -> /a/b (Java session ids)."""
        if self.strip is None:
            return path
        segments = []
        for segment in path.split("/"):
            name, *params = segment.split(";")
            kept = [p for p in params if not self.strip.fullmatch(p.partition("=")[0].lower())]
            segments.append(";".join([name, *kept]))
        return "/".join(segments)

    def _strip_query(self, query: str) -> str:
        if self.strip is None:
            return query
        kept = [p for p in query.split("&")
                if p and not self.strip.fullmatch(p.partition("=")[0].lower())]
        return "&".join(kept)


def host_of(url: str) -> str:
    """Lower-case host name of a URL ('' when it has none)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def domain_matches(host: str, domains: Iterable[str]) -> bool:
    """True when `host` is one of `domains` or a subdomain of one."""
    return any(host == d or host.endswith("." + d) for d in domains)


def path_suffix(path: str) -> str:
    """PurePosixPath(path).suffix, without making the path object where the path is plain
    (no trailing slash, no component starting with a dot): twice for every link a crawl
    meets."""
    if path.endswith("/") or "/." in path:
        return PurePosixPath(path).suffix
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot:] if 0 < dot < len(name) - 1 else ""


def url_kind_by_suffix(path: str) -> str | None:
    """The kept kind a URL path names by its suffix; "" for unwanted, None when unknown."""
    suffix = path_suffix(path).lower()
    if not suffix:
        return None
    if suffix in SUFFIX_KINDS:
        return SUFFIX_KINDS[suffix]
    if suffix[1:] in UNWANTED_SUFFIXES:
        return ""
    return None


@dataclass(slots=True)
class Blocklist:
    """Lines of a blocklist file: `# comment`, `exact:URL` (or a bare URL), `domain:HOST`
    (that host and its subdomains), `prefix:URL-PREFIX`, `regex:PATTERN` (searched)."""

    exact: set[str] = field(default_factory=set)
    domains: list[str] = field(default_factory=list)
    prefixes: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = None

    @classmethod
    def load(cls, path: Path, normalize: Normalizer) -> Blocklist:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ConfigError(f"crawl.blocklist_file {path}: cannot read ({e.strerror})") from None
        return cls.parse(lines, normalize, origin=str(path))

    @classmethod
    def parse(cls, lines: Iterable[str], normalize: Normalizer, origin: str = "blocklist"
              ) -> Blocklist:
        out = cls()
        prefixes: list[str] = []
        patterns: list[str] = []
        for n, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            kind, sep, value = line.partition(":")
            kind = kind.lower()
            if not sep or kind in ("http", "https"):
                kind, value = "exact", line
            value = value.strip()
            if kind == "exact":
                url = normalize(value)
                if url is None:
                    raise ConfigError(f"{origin}:{n}: not an http(s) URL: {value!r}")
                out.exact.add(url)
            elif kind == "domain":
                out.domains.append(value.lower().lstrip("."))
            elif kind == "prefix":
                prefixes.append(value)
            elif kind == "regex":
                try:
                    re.compile(value)
                except re.error as e:
                    raise ConfigError(f"{origin}:{n}: bad regex ({e}): {value!r}") from None
                patterns.append(value)
            else:
                raise ConfigError(f"{origin}:{n}: unknown rule {kind!r}; use exact:, domain:, "
                                  "prefix: or regex:")
        out.prefixes = tuple(prefixes)
        out.regex = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
        return out

    def blocks(self, url: str, host: str) -> bool:
        return (url in self.exact or url.startswith(self.prefixes)
                or domain_matches(host, self.domains)
                or (self.regex is not None and self.regex.search(url) is not None))


@dataclass(slots=True)
class UrlPolicy:
    """Where the crawl may go. `check(url)` takes a normalised URL and returns None or a Reason."""

    allowed_domains: list[str]
    denied_domains: list[str]
    kinds: frozenset[str]
    exclude: re.Pattern[str] | None = None
    blocklist: Blocklist = field(default_factory=Blocklist)

    @classmethod
    def from_config(cls, cfg: CrawlConfig, seeds: Sequence[str], normalize: Normalizer
                    ) -> UrlPolicy:
        """Seeds (start and sitemap URLs) give the allowed hosts when none are configured."""
        allowed = [d.lower().lstrip(".") for d in cfg.allowed_domains]
        if not allowed:
            allowed = sorted({h for h in map(host_of, seeds) if h})
        exclude = (re.compile("|".join(f"(?:{p})" for p in cfg.exclude_patterns))
                   if cfg.exclude_patterns else None)
        blocklist = (Blocklist.load(Path(cfg.blocklist_file).expanduser(), normalize)
                     if cfg.blocklist_file else Blocklist())
        return cls(allowed_domains=allowed,
                   denied_domains=[d.lower().lstrip(".") for d in cfg.denied_domains],
                   kinds=frozenset(cfg.file_types), exclude=exclude, blocklist=blocklist)

    def check_host(self, host: str) -> str | None:
        """The domain rules alone (for sitemaps, whose .xml/.gz names are no page kind)."""
        if not host:
            return Reason.BAD_URL
        if domain_matches(host, self.denied_domains):
            return Reason.DENIED_DOMAIN
        if self.allowed_domains and not domain_matches(host, self.allowed_domains):
            return Reason.OFFSITE
        return None

    def check(self, url: str) -> str | None:
        if len(url) > MAX_URL_CHARS:
            return Reason.URL_TOO_LONG
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            return Reason.SCHEME
        host = (parts.hostname or "").lower()
        reason = self.check_host(host)
        if reason is not None:
            return reason
        if self.blocklist.blocks(url, host):
            return Reason.BLOCKLISTED
        if self.exclude is not None and self.exclude.search(url):
            return Reason.EXCLUDED
        kind = url_kind_by_suffix(parts.path)
        if kind is not None and kind not in self.kinds:
            return Reason.FILE_TYPE
        if _is_path_loop(parts.path):
            return Reason.TRAP
        return None


def _is_path_loop(path: str) -> bool:
    segments = [s for s in path.split("/") if s]
    if len(segments) <= MAX_SEGMENT_REPEATS:
        return False
    counts: dict[str, int] = {}
    for s in segments:
        counts[s] = counts.get(s, 0) + 1
        if counts[s] > MAX_SEGMENT_REPEATS:
            return True
    return False
