"""Reply-token addresses: ``reply+<request>.<requester>.<mac>@<intake host>``.

Pure. An information request mailed to an e-mail-only agency carries a
Reply-To address that names the request and the agency that asked, with an
HMAC-SHA256 tag (keyed by a secret of the intake) over both and the agency
it was sent to. The address is its own record: nothing to store, it
survives restarts, and it cannot be forged or re-pointed at another request
or used by another agency. Base32 in lower case, because mail systems may
change the case of a local part.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass

PREFIX = "reply+"
TAG_BYTES = 10
TOKEN = re.compile(r"reply\+([a-z2-7]{26})\.([a-z][a-z0-9-]{1,31})\.([a-z2-7]{16})")


@dataclass(frozen=True)
class ReplyToken:
    request_id: str  # the InformationRequest's message id: the answer's InReplyTo
    requester: str  # the agency that asked: the answer goes to it
    responder: str  # the agency the request was mailed to: only its domains may answer


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _tag(key: bytes, token: ReplyToken) -> str:
    message = f"{token.request_id}|{token.requester}|{token.responder}".encode()
    return _b32(hmac.new(key, message, hashlib.sha256).digest()[:TAG_BYTES])


def local_part(key: bytes, token: ReplyToken) -> str:
    request = _b32(uuid.UUID(token.request_id).bytes)
    return f"{PREFIX}{request}.{token.requester}.{_tag(key, token)}"


def read(key: bytes, local: str, responder: str) -> ReplyToken | None:
    """The token in ``local`` if its tag holds for ``responder``; None otherwise."""
    match = TOKEN.fullmatch(local.lower())
    if match is None:
        return None
    request_id = str(uuid.UUID(bytes=base64.b32decode(match[1].upper() + "======")))
    token = ReplyToken(request_id, match[2], responder)
    return token if hmac.compare_digest(_tag(key, token), match[3]) else None


def looks_like_token(local: str) -> bool:
    return local.lower().startswith(PREFIX)
