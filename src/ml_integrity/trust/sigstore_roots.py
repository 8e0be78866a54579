"""Sigstore trust material: the trusted root and client trust configs, over TUF or from files.

:class:`SigstoreTrust` says where the trusted root comes from (a file's bytes,
or a public-good instance refreshed over TUF, or offline from the cache);
:func:`trusted_root` and :func:`load_client_trust_config` load them with
errors that say what to do. sigstore is imported when a root is loaded.
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ml_integrity.errors import ConfigError, Error, NetworkError, OperationalError, UsageError

if TYPE_CHECKING:
    from sigstore.models import ClientTrustConfig, TrustedRoot

__all__ = [
    "SigstoreTrust",
    "first_line",
    "load_client_trust_config",
    "quiet_sigstore_logs",
    "tlog_details",
    "trusted_root",
    "tuf_config",
]

_TUF_URLS = {
    "production": "https://tuf-repo-cdn.sigstore.dev",
    "staging": "https://tuf-repo-cdn.sigstage.dev",
}
"""TUF repositories of the public-good instances (tests point them at loopback)."""


def quiet_sigstore_logs() -> None:
    """sigstore logs routine warnings (e.g. TUF offline mode); our messages say it better."""
    logger = logging.getLogger("sigstore")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SigstoreTrust:
    """Where the trusted root for verification comes from.

    ``trusted_root``: the bytes of a ``trusted_root.json`` or of a
    ``ClientTrustConfig`` (its root is used); else the public-good
    ``instance``, refreshed over TUF unless ``offline`` (then the root cached
    by an earlier refresh, or the one shipped with sigstore-python).
    """

    instance: Literal["production", "staging"] = "production"
    offline: bool = False
    trusted_root: bytes | None = None
    trusted_root_label: str | None = None

    def describe(self) -> str:
        if self.trusted_root is not None:
            return f"trusted root {self.trusted_root_label}"
        return f"Sigstore {self.instance}" + (" (offline)" if self.offline else "")

    @classmethod
    def from_file(cls, path: Path) -> SigstoreTrust:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError("trusted root not found", path=path) from None
        except OSError as exc:
            raise UsageError(f"cannot read the trusted root: {exc.strerror}", path=path) from None
        return cls(trusted_root=data, trusted_root_label=str(path))


def tuf_config(instance: str, *, offline: bool) -> ClientTrustConfig:
    from sigstore.errors import Error as SigstoreError
    from sigstore.errors import TUFError
    from sigstore.models import ClientTrustConfig

    quiet_sigstore_logs()
    try:
        return ClientTrustConfig.from_tuf(_TUF_URLS[instance], offline=offline)
    except TUFError as exc:
        raise NetworkError(
            f"cannot refresh the Sigstore {instance} trust root over TUF "
            f"({_TUF_URLS[instance]}): {exc.message}",
            hint="check the network; to verify without network, pass --offline (the trust "
            "root cached or shipped with sigstore-python) or --trusted-root FILE",
        ) from None
    except SigstoreError as exc:
        raise OperationalError(
            f"cannot load the Sigstore {instance} trust root: {exc}",
            hint="clear the cache (~/.cache/sigstore-python, ~/.local/share/sigstore-python) "
            "and retry",
        ) from None


def _parse_trust_document(data: bytes, label: str) -> tuple[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"not valid JSON: {exc}", path=label) from None
    media = doc.get("mediaType", "") if isinstance(doc, dict) else ""
    if "clienttrustconfig" in media:
        return "clienttrustconfig", doc
    if "trustedroot" in media:
        return "trustedroot", doc
    raise ConfigError(
        f"not a Sigstore trusted root or client trust config (mediaType {media!r})",
        path=label,
        hint="expected trusted_root.json (application/vnd.dev.sigstore.trustedroot+json) or "
        "a ClientTrustConfig (application/vnd.dev.sigstore.clienttrustconfig.v0.1+json)",
    )


def load_client_trust_config(data: bytes, label: str) -> ClientTrustConfig:
    from sigstore.models import ClientTrustConfig

    kind, _ = _parse_trust_document(data, label)
    if kind != "clienttrustconfig":
        raise ConfigError(
            "signing needs a ClientTrustConfig (trusted root + signing config), "
            "not just a trusted root",
            path=label,
        )
    try:
        return ClientTrustConfig.from_json(data.decode("utf-8"))
    except Exception as exc:  # pydantic validation errors and the like
        raise ConfigError(f"invalid client trust config: {first_line(exc)}", path=label) from None


def trusted_root(trust: SigstoreTrust) -> TrustedRoot:
    from sigstore.models import TrustedRoot

    if trust.trusted_root is None:
        return tuf_config(trust.instance, offline=trust.offline).trusted_root
    label = trust.trusted_root_label or "trusted root"
    kind, _ = _parse_trust_document(trust.trusted_root, label)
    try:
        if kind == "clienttrustconfig":
            return load_client_trust_config(trust.trusted_root, label).trusted_root
        from sigstore_models.trustroot import v1 as trustroot_v1

        return TrustedRoot(trustroot_v1.TrustedRoot.from_json(trust.trusted_root))
    except Error:
        raise
    except Exception as exc:
        raise ConfigError(f"invalid trusted root: {first_line(exc)}", path=label) from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def tlog_details(raw: Any) -> dict[str, object]:
    try:
        entry = raw["verificationMaterial"]["tlogEntries"][0]
        out: dict[str, object] = {"log_index": int(entry["logIndex"])}
        when = int(entry["integratedTime"])
        out["integrated_time"] = datetime.datetime.fromtimestamp(
            when, datetime.timezone.utc
        ).isoformat()
        return out
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
