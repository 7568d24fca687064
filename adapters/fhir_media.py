"""FHIR media types, shared by the FHIR dialects: what a request's ``Content-Type`` means
and what to answer in (``_format`` first, then ``Accept``; JSON by default)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.errors import ErrorCode, WijkbrugError

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
# Only a well-formed type/subtype is named back in an error (it could be anything).
_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+\-]{1,80}/[A-Za-z0-9!#$&^_.+\-]{1,80}$")


@dataclass(frozen=True)
class FhirMedia:
    """The media types and FHIR versions one FHIR endpoint takes."""

    json_types: tuple[str, ...]
    xml_types: tuple[str, ...]
    versions: tuple[str, ...]  # accepted ``fhirVersion`` media-type parameters
    wrong_version: str  # what to tell a sender of another FHIR version

    @property
    def types(self) -> tuple[str, ...]:
        return self.json_types + self.xml_types

    def media_format(self, content_type: str) -> str:
        """``"json"`` or ``"xml"`` for a Content-Type header; ``WijkbrugError`` if not taken."""
        mime, _, raw_params = content_type.partition(";")
        mime = mime.strip().lower() or FHIR_JSON
        params = dict(
            (key.strip().lower(), value.strip().strip('"').lower())
            for key, _, value in (p.partition("=") for p in raw_params.split(";") if p.strip())
        )
        if mime not in self.types:
            shown = f"{mime} is" if _TOKEN.match(mime) else "this media type is"
            raise WijkbrugError(
                ErrorCode.NOT_SUPPORTED,
                f"{shown} not supported; send one of {', '.join(self.types)}",
            )
        if params.get("charset", "utf-8") != "utf-8":
            raise WijkbrugError(ErrorCode.NOT_SUPPORTED, "only the UTF-8 charset is supported")
        version = params.get("fhirversion")
        if version is not None and version not in self.versions:
            raise WijkbrugError(ErrorCode.NOT_SUPPORTED, self.wrong_version)
        return "xml" if mime in self.xml_types else "json"

    def response_media_type(self, accept: str | None, format_param: str | None = None) -> str:
        """The media type to answer in: ``_format`` first, then ``Accept``; JSON by default."""
        if format_param:
            wanted = format_param.strip().lower()
            return FHIR_XML if wanted in ("xml", "text/xml", *self.xml_types) else FHIR_JSON
        best, best_q = FHIR_JSON, 0.0
        for part in (accept or "").split(","):
            mime, _, params = part.partition(";")
            mime = mime.strip().lower()
            q = 1.0
            for param in params.split(";"):
                key, _, value = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(value)
                    except ValueError:
                        q = 0.0
            if (mime in self.xml_types or mime == "text/xml") and q > best_q:
                best, best_q = FHIR_XML, q
            elif mime in (*self.json_types, "*/*", "application/*") and q > best_q:
                best, best_q = FHIR_JSON, q
        return best
