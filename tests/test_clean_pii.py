"""PII and secret scrubbing (clean.pii): each kind becomes its placeholder and is counted;
near misses survive; on in the clean stage before dedup, off leaves the text as it was."""

from __future__ import annotations

import random

import pytest
from test_dataset_support import doc_id, make_text

from pipeline.clean import clean_documents, iter_clean_documents
from pipeline.config import build_config
from pipeline.docstore import write_part
from pipeline.layout import DataRoot
from pipeline.pii import iban_ok, luhn_ok, scrub
from pipeline.records import Document

FOUND = [
    ("mail alice.smith@example.co.uk now", "mail <EMAIL> now", "email"),
    ("bob+tag@mail.example.org", "<EMAIL>", "email"),
    ("call +1 415 555 2671 today", "call <PHONE> today", "phone"),
    ("call (415) 555-2671", "call <PHONE>", "phone"),
    ("call 415-555-2671.", "call <PHONE>.", "phone"),
    ("Tel. +49 30 1234567", "Tel. <PHONE>", "phone"),
    ("host 192.168.1.10, port 22", "host <IP>, port 22", "ip"),
    ("at 2001:db8::8a2e:370:7334 and ::1", "at <IP> and <IP>", "ip"),
    ("fe80::1ff:fe23:4567:890a%eth0", "<IP>%eth0", "ip"),
    ("card 4111 1111 1111 1111 exp", "card <CARD> exp", "card"),
    ("card 5500-0000-0000-0004", "card <CARD>", "card"),
    ("IBAN DE89 3704 0044 0532 0130 00.", "IBAN <IBAN>.", "iban"),
    ("GB82WEST12345698765432", "<IBAN>", "iban"),
    ("key AKIAIOSFODNN7EXAMPLE", "key <SECRET>", "secret"),
    ("ghp_" + "a1B2" * 9, "<SECRET>", "secret"),
    ("glpat-abcdefghij0123456789", "<SECRET>", "secret"),
    ("xoxb-1234567890-abcdefghij", "<SECRET>", "secret"),
    ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
     "Bearer <SECRET>", "secret"),
    ('password = "correct horse"', "password = <SECRET>", "secret"),
    ("DB_PASSWORD=s3cr3t; next", "DB_PASSWORD=<SECRET>; next", "secret"),
    ("api_key: abc123", "api_key: <SECRET>", "secret"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nend",
     "<SECRET>\nend", "secret"),
]

SURVIVE = [
    "Python 3.12.1 and v1.2.3.4, version 10.0.0.1, release 2.0.0.1",  # versions
    "on 2026-01-01 at 12:30:45, or 01.02.2026",  # dates and times
    "pi is 3.14159, total 1,234,567.89 and 0.000123",  # decimals
    "ISBN 978-3-16-148410-0 and ISBN 0-306-40615-2",  # ISBNs
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # hex hashes
    "commit 4f9d2a1b3c5e7f9012345678901234567890abcd",
    "root@buildbox:~$ make && user@localhost",  # shell prompts without a dotted domain
    "| 123 | 4567 | 89.10 | 2024 | 16777216 |",  # numbers in a table
    "std::vector<int> x; a::b::c; MAC 00:1a:2b:3c:4d:5e",  # C++ scopes, MAC addresses
    "card 4111 1111 1111 1112",  # fails Luhn
    "DE89 3704 0044 0532 0130 01",  # fails the IBAN checksum
    "the password field is required; enter a secret",  # names without a value
    "x = 1.5e-10; y = 256.256.256.256",  # not an address
]


@pytest.mark.parametrize(("text", "expected", "kind"), FOUND)
def test_each_kind_becomes_its_placeholder_and_is_counted(text: str, expected: str,
                                                          kind: str) -> None:
    out, counts = scrub(text)
    assert out == expected and counts[kind] >= 1 and set(counts) == {kind}


@pytest.mark.parametrize("text", SURVIVE)
def test_near_misses_survive(text: str) -> None:
    assert scrub(text) == (text, {})


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89370400440532013001")


def _doc(i: int, text: str) -> Document:
    return Document(id=doc_id(f"pii-{i}"), source=f"/pii/{i}.txt", mime="text/plain", text=text,
                    created_at="2026-01-01")


def test_clean_replaces_before_dedup_and_counts_per_kind(root: DataRoot) -> None:
    prose = make_text(random.Random(3), 120)
    docs = [_doc(0, f"Write to alice@example.com or call +1 415 555 2671.\n\n{prose}"),
            _doc(1, f"Write to bob@example.org or call +1 212 555 0199.\n\n{prose}"),
            _doc(2, make_text(random.Random(4), 120) + "\n\nServer 10.1.2.3, key "
                 "AKIAIOSFODNN7EXAMPLE.")]
    write_part(root.docs, docs)
    stats = clean_documents(build_config([{"clean": {"workers": 1}}]), root, progress=False)
    # the first two differ only in what was replaced: one is an exact duplicate
    assert stats.kept == 2 and dict(stats.dropped) == {"exact_duplicate": 1}
    assert stats.extra["pii_replaced"] == {"email": 1, "ip": 1, "phone": 1, "secret": 1}
    texts = [d.text for d in iter_clean_documents(root, ["part-00000.jsonl.zst"])]
    assert texts[0].startswith("Write to <EMAIL> or call <PHONE>.")
    assert texts[1].endswith("Server <IP>, key <SECRET>.")


def test_pii_off_keeps_the_text(root: DataRoot) -> None:
    text = "Write to alice@example.com.\n\n" + make_text(random.Random(5), 120)
    write_part(root.docs, [_doc(0, text)])
    stats = clean_documents(build_config([{"clean": {"workers": 1, "pii": "off"}}]), root,
                            progress=False)
    assert stats.kept == 1 and "pii_replaced" not in stats.extra
    (doc,) = iter_clean_documents(root, ["part-00000.jsonl.zst"])
    assert doc.text == text


def test_long_adversarial_runs_are_left_as_they_are() -> None:
    for text in ("7" * 200_000, "ab:" * 50_000, "a." * 50_000 + "@", "1." * 50_000,
                 "-" * 100_000 + "BEGIN PRIVATE KEY"):
        assert scrub(text) == (text, {})
