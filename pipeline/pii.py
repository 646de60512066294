"""PII and secret scrubbing (clean.pii = "replace"): e-mail addresses, phone numbers, IP
addresses, payment card numbers, IBANs and secrets become typed placeholders before dedup and
tokenization, counted per kind.

Regular expressions, each candidate checked before it is replaced: a card number must pass
Luhn, an IBAN its mod-97 checksum, an IP address must parse (`ipaddress`). What survives on
purpose: version numbers (1.2.3, v1.2.3.4), dates and times, decimal numbers, ISBNs, hex
hashes, `user@host` without a dotted domain (shell prompts), numbers in tables.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable

PLACEHOLDERS = {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>", "card": "<CARD>",
                "iban": "<IBAN>", "secret": "<SECRET>"}

_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
                          r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.DOTALL)
_TOKENS = re.compile(
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\bgh[pousr]_[A-Za-z0-9]{36,255}\b|\bgithub_pat_[A-Za-z0-9_]{22,255}\b"  # GitHub
    r"|\bglpat-[A-Za-z0-9_-]{20,}"  # GitLab personal access tokens
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")  # JWTs
# `password = "hunter2"`, `secret: abc`, `API_KEY=...`: the value goes, the name stays
_ASSIGNED = re.compile(
    r"(?i)((?<![a-z0-9])(?:password|passwd|pwd|secret|api_?key|access_?key|auth_?token|"
    r"client_secret|private_key)\b[\"']?\s*[:=]\s*)"
    r"(\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s\"',;]{1,200})")
_EMAIL = re.compile(r"\b[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+"
                    r"[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d.,-])(?:\d[ -]?){12,18}\d(?![\d.,]\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\d)")
_VERSION_BEFORE = re.compile(r"(?i)(?:\bv|\bversion\s|\brelease\s|\bbuild\s)$")
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# +CC and a national number, or the North American (NNN) NNN-NNNN and NNN-NNN-NNNN forms
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,4}){2,5}(?!\w)")
_PHONE_PAREN = re.compile(r"(?<![\w(])\(\d{3}\) ?\d{3}[ .-]\d{4}(?!\w)")
_PHONE_DASHED = re.compile(r"(?<![\w.-])\d{3}([.-])\d{3}\1\d{4}(?![\w.-]*\d)")
# cheap tests that rule a detector out for most texts before its pattern runs
_ASSIGN_WORDS = ("pass", "pwd", "secret", "key", "token")
_TOKEN_MARKS = ("AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-",
                "xox", "eyJ")
_LONG_DIGITS = re.compile(r"\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?\d[ -]?"
                          r"\d[ -]?\d[ -]?\d[ -]?\d")
_DOTTED_QUAD = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")
_IBAN_START = re.compile(r"[A-Z]{2}\d\d")

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    iban = text.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _card(m: re.Match[str]) -> bool:
    digits = re.sub(r"\D", "", m.group())
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_ok(digits)


def _ipv4(m: re.Match[str]) -> bool:
    if _VERSION_BEFORE.search(m.string, max(m.start() - 12, 0), m.start()):
        return False  # v1.2.3.4, version 2.0.0.1: a version
    try:
        ipaddress.IPv4Address(m.group())
    except ValueError:
        return False
    return True


def _ipv6(m: re.Match[str]) -> bool:
    text = m.group()
    if text.count(":") < 2 or not any(c.isdigit() for c in text):  # std::max, a::b
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _phone(m: re.Match[str]) -> bool:
    return 7 <= sum(c.isdigit() for c in m.group()) <= 15


def _always(m: re.Match[str]) -> bool:
    return True


def _has(*marks: str) -> Callable[[str], bool]:
    return lambda text: any(mark in text for mark in marks)


# in this order: a secret or key may hold what looks like a number or an address; each with
# its cheap test, its pattern and the check of a candidate
_DETECTORS: tuple[tuple[str, Callable[[str], bool], re.Pattern[str],
                        Callable[[re.Match[str]], bool]], ...] = (
    ("secret", _has("PRIVATE KEY-----"), _PRIVATE_KEY, _always),
    ("secret", _has(*_TOKEN_MARKS), _TOKENS, _always),
    ("email", _has("@"), _EMAIL, _always),
    ("iban", lambda t: _IBAN_START.search(t) is not None, _IBAN, lambda m: iban_ok(m.group())),
    ("card", lambda t: _LONG_DIGITS.search(t) is not None, _CARD, _card),
    ("ip", lambda t: "::" in t or t.count(":") >= 3, _IPV6, _ipv6),
    ("ip", lambda t: _DOTTED_QUAD.search(t) is not None, _IPV4, _ipv4),
    ("phone", _has("+"), _PHONE_INTL, _phone),
    ("phone", _has("("), _PHONE_PAREN, _phone),
    ("phone", lambda t: _DASHED_NUMBER.search(t) is not None, _PHONE_DASHED, _phone),
)
_DASHED_NUMBER = re.compile(r"\d{3}[.-]\d{3}[.-]\d")

def scrub(text: str) -> tuple[str, Counter[str]]:
    """The text with every detected item replaced by its placeholder, and counts per kind."""
    counts: Counter[str] = Counter()

    def assigned(m: re.Match[str]) -> str:
        counts["secret"] += 1
        return m.group(1) + PLACEHOLDERS["secret"]

    lower = text.lower()
    if any(word in lower for word in _ASSIGN_WORDS):
        text = _ASSIGNED.sub(assigned, text)
    for kind, maybe, pattern, valid in _DETECTORS:
        if not maybe(text):
            continue
        holder = PLACEHOLDERS[kind]

        def replace(m: re.Match[str], kind: str = kind, holder: str = holder,
                    valid: Callable[[re.Match[str]], bool] = valid) -> str:
            if not valid(m):
                return m.group()
            counts[kind] += 1
            return holder

        text = pattern.sub(replace, text)
    return text, counts
