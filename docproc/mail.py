"""E-mail (the standard library's `email` and `mailbox`): a message's text body (or its HTML
body through the HTML extractor), its Subject, From, To and Date, and its attachments, each
to be extracted as a document of its own; an mbox's messages one by one.

A message encrypted with S/MIME or PGP is refused (`encrypted`): its body is ciphertext.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from docproc.result import Extracted
from pipeline.errors import CorruptInput, EncryptedInput

META_FIELDS = ("subject", "from", "to", "cc", "date", "message-id")
ENCRYPTED_TYPES = frozenset({"multipart/encrypted", "application/pkcs7-mime",
                             "application/x-pkcs7-mime"})
HTML_TYPE = "text/html"


@dataclass(slots=True)
class Attachment:
    name: str  # the file name it carries, or "attachment-N"
    data: bytes


@dataclass(slots=True)
class Message:
    """One message: its body as extracted text (empty when it has none), its attachments."""

    body: Extracted
    attachments: list[Attachment] = field(default_factory=list)


def email_version() -> str:
    import platform

    return f"python email {platform.python_version()}"


def parse(data: bytes, source: str) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(msg, EmailMessage) or not msg.keys():
        raise CorruptInput(source, "not a mail message: no header fields")
    if _encrypted(msg):
        raise EncryptedInput(source, "encrypted mail (S/MIME or PGP): its body is ciphertext")
    return msg


def _encrypted(msg: EmailMessage) -> bool:
    kind = msg.get_content_type()
    if kind == "multipart/encrypted":  # PGP/MIME
        return True
    # S/MIME: enveloped data is ciphertext; signed data (smime-type=signed-data) is not
    return kind in ENCRYPTED_TYPES and msg.get_param("smime-type", "enveloped-data") in (
        "enveloped-data", "authenveloped-data")


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = str(msg.get(name) or "")
    except (ValueError, IndexError, TypeError, AttributeError):  # a malformed field
        value = ""
    return " ".join(value.split())


def metadata(msg: EmailMessage) -> dict[str, str]:
    return {k: v for k in META_FIELDS if (v := _header(msg, k))}


def _body_part(msg: EmailMessage) -> EmailMessage | None:
    try:
        return msg.get_body(preferencelist=("plain", "html"))
    except (KeyError, ValueError):
        return None


def _content(part: EmailMessage) -> str:
    try:
        return part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a broken encoding
        payload = part.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")


def body(msg: EmailMessage, source: str, markdown: bool) -> Extracted:
    """The message's text body (the plain one when there is one, else the HTML one)."""
    part = _body_part(msg)
    text, extractor = "", email_version()
    if part is not None and part.get_content_type() == HTML_TYPE:
        from docproc.html import extract_html_bytes
        from pipeline.errors import EmptyInput

        html = _content(part)
        try:
            found = extract_html_bytes(html.encode("utf-8"), source, markdown)
            text, extractor = found.text, f"{extractor} + {found.extractor}"
        except EmptyInput:
            text = ""
    elif part is not None:
        text = _content(part)
    meta = metadata(msg)
    return Extracted(extractor=extractor, text=text, title=meta.get("subject", ""),
                     record_meta=meta)


def attachments(msg: EmailMessage) -> Iterator[Attachment]:
    """Attachments with their decoded bytes (forwarded messages as .eml files)."""
    for n, part in enumerate(msg.iter_attachments(), 1):
        name = part.get_filename() or f"attachment-{n}"
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            data = inner.as_bytes() if hasattr(inner, "as_bytes") else b""
            name = part.get_filename() or f"message-{n}.eml"
        else:
            data = part.get_payload(decode=True) or b""
        if data:
            yield Attachment(name=name.replace("/", "_"), data=data)


def read_message(data: bytes, source: str, markdown: bool) -> Message:
    msg = parse(data, source)
    return Message(body=body(msg, source, markdown), attachments=list(attachments(msg)))


def iter_mbox(path: Path, source: str) -> Iterator[bytes]:
    """The bytes of each message of an mbox file, in file order."""
    try:
        box = mailbox.mbox(path, create=False)
    except (OSError, mailbox.Error) as e:
        raise CorruptInput(source, f"unreadable mbox: {e}") from None
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()
