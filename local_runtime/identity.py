"""The offline identity provider: a Cognito user pool's JWKS, and tokens to test with.

On AWS, speakers' tokens come from the stack's Cognito user pool and are
verified against its JWKS. Offline there is no Cognito: the runtime serves a
JWKS for every user pool (see ``seams._install_jwks``) made from one RSA key
pair, and :meth:`IdentityProvider.cognito_token` signs tokens shaped exactly
like Cognito's (``token_use``, ``aud`` / ``client_id``, ``cognito:groups``,
``custom:tenant``). breakwater's own HS256 tokens are signed with the key the
stack's ``SigningKeySecret`` holds (:meth:`breakwater_token`).

The key pair is a test key, never a deployment's: made on first use and kept
in the runtime's state directory (``.bw/state/``) so that ``bw token`` and a
later ``bw run`` agree; without a state directory it lives for the process.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from resilience.tokens import SigningKey, TokenPolicy, issue_token

__all__ = ["IdentityProvider"]

KEY_FILE = "identity-test-key.pem"
KID = "bw-local-1"
_process_key: rsa.RSAPrivateKey | None = None
_key_lock = threading.Lock()


def _load_key(state_dir: Path | None) -> rsa.RSAPrivateKey:
    global _process_key
    with _key_lock:
        path = state_dir / KEY_FILE if state_dir is not None else None
        if path is not None and path.is_file():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(loaded, rsa.RSAPrivateKey):
                return loaded
        if _process_key is None:
            _process_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(
                _process_key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            path.chmod(0o600)
        return _process_key


class IdentityProvider:
    def __init__(self, state_dir: Path | None = None) -> None:
        self._state_dir = state_dir
        self._key: rsa.RSAPrivateKey | None = None

    @property
    def key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            self._key = _load_key(self._state_dir)
        return self._key

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid=KID, alg="RS256", use="sig")
        return {"keys": [public]}

    def jwks_json(self, user_pool_id: str) -> bytes:
        return json.dumps(self.jwks()).encode()

    def cognito_token(
        self,
        policy: TokenPolicy,
        *,
        now: float,
        subject: str = "speaker-1",
        tenant: str | None = "acme",
        groups: tuple[str, ...] = ("speaker",),
        token_use: str = "id",
        lifetime_seconds: int = 3600,
        jti: str | None = None,
        **overrides: Any,
    ) -> str:
        """A token as the stack's user pool would issue it; ``overrides`` replace claims (tests)."""
        client_id = next(iter(sorted(policy.client_ids)), "local-client")
        claims: dict[str, Any] = {
            "iss": policy.cognito_issuer,
            "sub": subject,
            "jti": jti or str(uuid.uuid4()),
            "iat": int(now),
            "exp": int(now) + lifetime_seconds,
            "token_use": token_use,
            "cognito:groups": list(groups),
        }
        claims["aud" if token_use == "id" else "client_id"] = client_id
        if tenant is not None:
            claims["custom:tenant"] = tenant
        claims.update(overrides)
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})

    @staticmethod
    def breakwater_token(
        policy: TokenPolicy,
        key: SigningKey,
        *,
        now: float,
        subject: str = "bot-1",
        tenant: str | None = "acme",
        roles: tuple[str, ...] = ("speaker",),
        lifetime_seconds: int = 3600,
        jti: str | None = None,
    ) -> str:
        return issue_token(
            key,
            issuer=policy.breakwater_issuer,
            subject=subject,
            jti=jti or str(uuid.uuid4()),
            now=now,
            lifetime_seconds=lifetime_seconds,
            tenant=tenant,
            roles=roles,
        )
