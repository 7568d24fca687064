"""The ``edifact-medvri`` dialect: a Medeur MEDVRI letter (vrij bericht) in an EDIFACT interchange.

Dutch GP systems still send free-text letters this way through the secure mail hubs; the
HTTP layer posts the interchange to ``/edifact``.

    body bytes --Latin-1 (lossless)--> text --UNA always present, line breaks out-->
        pydifact Parser (+ _Reader: composite tags, position tracking, no XML validation)
                                    |
           segments: tag, tag qualifier, index (UNB = 1), raw values
                                    v
    UNB syntax identifier --> values decoded (UNOA/UNOB ASCII, UNOC Latin-1, UNOW UTF-8)
                                    v
    envelope: UNB, UNH..UNT (segment count, reference), UNZ (message count, reference)
                                    v
    one CaseMessage per UNH..UNT, or one EdifactError with every issue found, each naming
    the segment (tag and index), the element and the component

    Reply --render_reply()--> UNA UNB UNH GGA DET [PID PAD] TXT.. GGO UNT UNZ (bytes)

Supported layout
================

Positions count like EDIFACT's CONTRL message: segments from 1 with UNB = 1 (the UNA
service string advice is not counted), data elements from 1 after the tag, components
from 1. ``M`` = Wijkbrug needs it, ``-`` = read when present, ``x`` = ignored.

=====  ==  ================================================================================
UNA    -   service string advice, default ``:+.? '``; the release character must be set
UNB    M   1 syntax identifier:version -- UNOA, UNOB (ASCII), UNOC (ISO 8859-1, with bytes
           0x80-0x9F read as Windows-1252), UNOD, UNOE, UNOF (ISO 8859-2/5/7), UNOW, UNOY
           (UTF-8); 2 sender identification = the sender's AGB code, 8 digits (a
           ``:qualifier`` is allowed); 3 recipient identification (x); 4 date ``yymmdd`` or
           ``ccyymmdd`` : time ``hhmm``; 5 interchange control reference; 6.. (x)
UNH    M   1 message reference; 2 message type ``MEDVRI`` : version (any) : ...
GGA    M   afzender: 1 name of the sending person (M); 2 department (x); 3 institution;
           4 address (x); 5 phone (x)
DET    -   1 date ``yy:mm:dd`` (or ``ccyy:mm:dd``); 2 time ``hh:mm`` -- the letter's date,
           Dutch local time; without DET the UNB date and time are used
PID    M   1 birth date ``ccyy:mm:dd`` (or ``ccyymmdd``); 2 sex M, V (or F), O; 3 name:
           partner's surname : its prefix : own surname : its prefix : first name :
           initials; 4 sender's patient number (x); 5 BSN as ``BSN`` + 9 digits (as the
           3.BSN specification writes it) or 9 digits -- 11-test checked
PAD    M   1 address: street : house number : PO box : city : postcode (M) : province :
           country; 2 phone
TXT    M   1 one line of text (an..70). One or more; blank lines as ``TXT'``, ``TXT+'``.
           The tag may carry a line number, ``TXT:1+...`` (kept in order of arrival).
           Unreleased ``:`` or ``+`` inside a line are put back (senders often forget to
           release them in free text).
GGO    -   ontvanger: 1 name; 2 department; 3 institution (kept as a ``note`` of the
           resource; Wijkbrug routes by preferred provider, so ``recipient_ura`` is None)
UNT    M   1 number of segments UNH..UNT; 2 message reference (= UNH 1)
UNZ    M   1 number of messages; 2 control reference (= UNB 5)
=====  ==  ================================================================================

Segments may come in any order inside UNH..UNT; GGA, DET, PID, PAD and GGO at most once.
Other segments, functional groups (UNG/UNE) and a second UNB are refused.

Care type and priority. MEDVRI has no field for them, so a GP writes them as the first
text lines, which every practice system's letter editor can do::

    TXT+Zorgsoort?: wondzorg'      (code or display name of the care-type CodeSystem)
    TXT+Urgentie?: spoed'          (routine/normaal, spoed/urgent, zsm/asap, direct/stat)

Such leading ``Zorgsoort:``/``Urgentie:`` lines (case-insensitive, the colon released or
not) are taken out of the text; without them the care type is ``wijkverpleging`` and the
priority routine. The message identifier is ``urn:wijkbrug:edifact:<UNB sender AGB>`` |
``<UNB control reference>/<UNH message reference>``, so a re-posted interchange maps to
the same identifiers (the bridge's idempotency key). A rejected interchange is rejected as
a whole: one bad message fails all (as an EDIFACT CONTRL would).

Sources
=======

- Nictiz, "Specificatie berichten 3i-project, versie 3.BSN" (the Medeur messages MEDLAB,
  MEDVRI, MEDRAD, MEDSPE), as transcribed in zatosource/zato,
  ``code/zato-common/src/zato/edifact/nl/segments.py`` and ``nl/messages.py``: the
  element lists of GGA, GGO, DET, PID, PAD, TXT and the MEDVRI segment order
  UNH GGA DET PID? PAD? TXT* GGO? UNT.
- mmerlijn/msg (a PHP reader/writer of ZorgMail Medeur messages): ``src/Edifact/MEDVRI.php``,
  ``segments/PID.php``, ``fields/Patientnaam.php``, ``fields/Adres.php`` and
  ``tests/EdifactMedvriTest.php`` -- the real-world forms ``TXT:1+...``, ``TXT:3'``, the
  BSN written ``BSN123456782`` in PID 5, ``UNOA:1`` with mixed case, an AGB-like code as
  UNB sender, one segment per line.
- ISO 9735 (UN/EDIFACT syntax): a segment tag is a composite whose further components
  indicate nesting and repetition -- which is what ``TXT:1`` is; UNB S001 syntax
  identifiers (UNOA...UNOY) and the CONTRL way of counting positions.

pydifact 0.2.3 and what this module adds around it
==================================================

pydifact tokenises (UNA, release character, separators) and groups tokens into raw
segments. Around it:

1. A composite segment tag (``TXT:1+...``) makes ``Parser`` raise "Invalid segment
   name"; ``_Reader.convert_raw_segment_to_segment`` splits it into tag and qualifier.
2. Without a UNA at the very start, ``Parser.parse`` looks for ``'UNA`` anywhere and would
   take a released ``?'UNA`` in free text as a service string advice, dropping what came
   before; the default UNA is therefore always put in front when the sender sent none.
3. Creating a segment validates it against XML directories 0.2.3 does not ship (one
   warning per segment; it also lists TXT as a service segment), and its UNB handling
   raises IndexError on a bare ``UNB'``; ``_Reader`` builds segments without either.
4. Its errors (EDISyntaxError, ValidationError, ValueError, IndexError) quote the data and
   give no segment position; ``_Reader`` tracks the position from the token stream and
   the error is replaced by our own, which never repeats a value.
5. A line break inside a segment (files hard-wrapped at 80 columns) would become data;
   CR and LF are taken out before tokenising (unless UNA makes one a separator).
6. ``Interchange``/``get_messages`` (assertions, one envelope check, data in messages) are
   not used; the envelope is checked here, with positions.

Nothing here logs or returns a value from the interchange: diagnostics say what is wrong
and where, never what was sent.
"""

from __future__ import annotations

import logging
import re
import textwrap
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydifact.constants import EDI_DEFAULT_DIRECTORY, EDI_DEFAULT_VERSION, Element, Elements
from pydifact.control.characters import Characters
from pydifact.exceptions import EDISyntaxError, ValidationError
from pydifact.parser import Parser
from pydifact.segments import Segment, SegmentFactory
from pydifact.serializer import Serializer
from pydifact.token import Token

from adapters.fhir_r4 import fhir_instant
from bridge.canonical import (
    CARE_TYPE_SYSTEM,
    CareType,
    CaseMessage,
    Identifier,
    Party,
    Patient,
    Priority,
    Reply,
)
from bridge.errors import ErrorCode, Issue, WijkbrugError
from bridge.identifiers import (
    AGB_SYSTEM,
    BSN_SYSTEM,
    format_postcode,
    is_valid_agb,
    is_valid_bsn,
    normalise_postcode,
)

logger = logging.getLogger(__name__)

NAME = "edifact-medvri"
EDIFACT = "application/edifact"
MEDIA_TYPES = (EDIFACT, "text/plain")
REPLY_MEDIA_TYPE = EDIFACT
IDENTIFIER_SYSTEM_PREFIX = "urn:wijkbrug:edifact:"
MESSAGE_TYPE = "MEDVRI"
# pydifact reads about a megabyte a second; a MEDVRI letter is a few kilobytes.
MAX_BODY_BYTES = 1024 * 1024
TXT_WIDTH = 70  # TXT 1 is an..70 (the release character does not count)

_AMSTERDAM = ZoneInfo("Europe/Amsterdam")
_DEFAULT_UNA = "UNA:+.? '"
_WRITE_CHARACTERS = Characters.from_str(_DEFAULT_UNA)
_WRITE_SYNTAX = ("UNOC", "3")

_CODECS = {
    "UNOA": "ascii",
    "UNOB": "ascii",
    "UNOC": "latin-1",
    "UNOD": "iso8859-2",
    "UNOE": "iso8859-5",
    "UNOF": "iso8859-7",
    "UNOW": "utf-8",
    "UNOY": "utf-8",
}
_SERVICE_TAGS = frozenset({"UNA", "UNB", "UNG", "UNH", "UNT", "UNE", "UNZ"})
_MEDVRI_TAGS = frozenset({"GGA", "DET", "PID", "PAD", "TXT", "GGO"})
# Tags safe to repeat in a diagnostic: a bad "tag" can be a piece of free text (after an
# unreleased apostrophe), so only tags known from the Medeur messages are ever echoed.
_KNOWN_TAGS = (
    _SERVICE_TAGS
    | _MEDVRI_TAGS
    | frozenset(
        {"ZKH", "ART", "AFD", "ARA", "KOP", "BLG", "IDE", "OPM", "SEC", "BEP", "OPB", "NUB"}
        | {"OPU", "COM", "VRG", "OND", "VRS", "CON", "ADD", "SPE", "REF"}
    )
)
_TAG = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_CONTROL_REF = re.compile(r"^[A-Za-z0-9]{1,14}$")
_PARTY_ID = re.compile(r"^[A-Za-z0-9]{1,35}$")
_MESSAGE_TYPE = re.compile(r"^[A-Z0-9]{1,6}$")
_BSN = re.compile(r"^(?:BSN)?\s*([0-9]{9})$", re.IGNORECASE)
_HEADER = re.compile(r"^\s*(zorgsoort|urgentie)\s*:\s*(.*?)\s*$", re.IGNORECASE)
_CARE_CODES = ", ".join(c.value for c in CareType)
_PRIORITY_WORDS = {
    "routine": Priority.ROUTINE,
    "normaal": Priority.ROUTINE,
    "regulier": Priority.ROUTINE,
    "urgent": Priority.URGENT,
    "spoed": Priority.URGENT,
    "asap": Priority.ASAP,
    "zsm": Priority.ASAP,
    "z.s.m.": Priority.ASAP,
    "zo snel mogelijk": Priority.ASAP,
    "stat": Priority.STAT,
    "direct": Priority.STAT,
    "acuut": Priority.STAT,
}
_GENDER = {"M": "male", "V": "female", "F": "female", "O": "unknown", "U": "unknown"}

# Local ids of the resources contained in the normalised Communication.
_PATIENT_ID = "patient"
_PRACTITIONER_ID = "sender"
_ORGANIZATION_ID = "organization"
_ROLE_ID = "sender-role"


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class EdifactIssue(Issue):
    """An issue with its place in the interchange (``None`` where it does not apply).

    ``segment`` is the tag (only a known tag is named), ``segment_index`` counts from
    UNB = 1 (UNA is not counted), ``element`` and ``component`` from 1 after the tag,
    ``message_number`` is the UNH..UNT message the issue is in, from 1.
    """

    segment: str | None = None
    segment_index: int | None = None
    element: int | None = None
    component: int | None = None
    message_number: int | None = None


class EdifactError(WijkbrugError):
    """A ``WijkbrugError`` whose issues are :class:`EdifactIssue` rows."""


def _at(
    code: ErrorCode,
    diagnostics: str,
    segment: str | None,
    index: int | None = None,
    element: int | None = None,
    component: int | None = None,
    *,
    message: int | None = None,
) -> EdifactIssue:
    tag = segment if segment in _KNOWN_TAGS else None
    parts = []
    if message is not None:
        parts.append(f"message {message}")
    if index is not None:
        parts.append(f"segment {index}" + (f" ({tag})" if tag else ""))
    elif tag:
        parts.append(tag)
    if element is not None:
        parts.append(f"element {element}")
    if component is not None:
        parts.append(f"component {component}")
    return EdifactIssue(
        code,
        diagnostics,
        ", ".join(parts) or None,
        segment=tag,
        segment_index=index,
        element=element,
        component=component,
        message_number=message,
    )


def _fail(issues: list[Issue]) -> EdifactError:
    summary = issues[0].diagnostics if len(issues) == 1 else f"{len(issues)} problems"
    return EdifactError(issues[0].code, summary, list(issues))


def error_response(error: WijkbrugError) -> dict[str, Any]:
    """The JSON body for an error on ``/edifact``; the HTTP status is ``error.status``.

    The first issue's place is repeated at the top level, e.g.
    ``{"error": "the BSN fails the 11-test", "code": "value", "status": 400,
    "segment": "PID", "segment_index": 5, "element": 5, "issues": [...]}``.
    Keys without a value are left out. Nothing in it comes from the interchange.
    """
    issues = [_issue_json(issue) for issue in error.all_issues()]
    top = {key: value for key, value in issues[0].items() if key not in ("error", "code")}
    return {
        "error": error.message,
        "code": error.code.value,
        "status": error.status,
        **top,
        "issues": issues,
    }


def _issue_json(issue: Issue) -> dict[str, Any]:
    out: dict[str, Any] = {"error": issue.diagnostics, "code": issue.code.value}
    if isinstance(issue, EdifactIssue):
        places = {
            "segment": issue.segment,
            "segment_index": issue.segment_index,
            "element": issue.element,
            "component": issue.component,
            "message_number": issue.message_number,
        }
        out.update((key, value) for key, value in places.items() if value is not None)
    elif issue.expression:
        out["expression"] = issue.expression
    return out


# ---------------------------------------------------------------- media type


def check_media_type(content_type: str) -> None:
    """``WijkbrugError`` (415) unless the Content-Type is one of :data:`MEDIA_TYPES`.

    A ``charset`` parameter is not used: the UNB syntax identifier names the character set.
    """
    mime = content_type.partition(";")[0].strip().lower() or EDIFACT
    if mime not in MEDIA_TYPES:
        raise EdifactError(
            ErrorCode.NOT_SUPPORTED,
            f"send the interchange as one of {', '.join(MEDIA_TYPES)}",
        )


# ---------------------------------------------------------------- syntax: pydifact + _Reader


class _Tagged(Segment):  # type: ignore[no-untyped-call]  # pydifact's __init_subclass__
    """A segment as read: tag, the rest of a composite tag (``TXT:1`` -> ``("1",)``), index."""

    __omitted__ = True  # keeps pydifact from registering this class as a segment plugin

    def __init__(
        self, tag: str, qualifier: tuple[str, ...], elements: Elements, index: int
    ) -> None:
        self.tag = tag
        self.qualifier = qualifier
        self.elements = elements
        self.index = index


class _PlainFactory(SegmentFactory):
    """Segments without pydifact's directory validation (0.2.3 ships no directories)."""

    @staticmethod
    def create_segment(
        name: str,
        *elements: Element,
        validate: bool = True,
        version: str = EDI_DEFAULT_VERSION,
        directory: str = EDI_DEFAULT_DIRECTORY,
    ) -> Segment:
        return Segment(name, *elements)


@dataclass
class _Cursor:
    """Where the token stream is: mirrors how pydifact groups tokens into segments."""

    index: int = 0  # of the segment being read, UNB = 1
    tag: str | None = None
    element: int = 0  # 0 = still in the tag
    component: int = 1
    open: bool = False

    def see(self, token: Token) -> None:
        kind = token.type
        if not self.open:
            self.index += 1
            self.open = True
            self.element, self.component = 0, 1
            self.tag = token.value if kind is Token.Type.CONTENT else None
            # pydifact takes a terminator at the start of a segment as content.
            if kind in (Token.Type.CONTENT, Token.Type.TERMINATOR):
                return
        if kind is Token.Type.DATA_SEPARATOR:
            self.element, self.component = self.element + 1, 1
        elif kind is Token.Type.COMPONENT_SEPARATOR:
            self.component += 1
        elif kind is Token.Type.TERMINATOR:
            self.open = False


class _Reader(Parser):
    """pydifact's parser, taught composite segment tags and to say where it failed."""

    def __init__(self) -> None:
        super().__init__(factory=_PlainFactory())
        self.cursor = _Cursor()

    def convert_tokens_to_raw_segments(self, tokens: Iterable[Token]) -> Iterator[Elements]:
        return super().convert_tokens_to_raw_segments(self._tracked(tokens))

    def _tracked(self, tokens: Iterable[Token]) -> Iterator[Token]:
        for token in tokens:
            self.cursor.see(token)
            yield token

    def convert_raw_segment_to_segment(
        self, raw_segment: Elements, directory: str = EDI_DEFAULT_DIRECTORY
    ) -> Segment:
        index = self.cursor.index
        head, *elements = raw_segment
        parts = [head] if isinstance(head, str) else list(head)
        tag = parts[0].strip() if parts else ""
        if not _TAG.match(tag):
            raise _fail(
                [
                    _at(
                        ErrorCode.INVALID,
                        "not a segment tag (three capital letters or digits); a segment "
                        "terminator may be missing or a ' in the text not released with ?",
                        None,
                        index,
                    )
                ]
            )
        if tag == "UNA":
            raise _fail([_at(ErrorCode.INVALID, "UNA may only come first", "UNA", index)])
        return _Tagged(tag, tuple(parts[1:]), list(elements), index)

    def failure(self, error: Exception) -> EdifactError:
        """Our error for one pydifact raised, at the cursor; its text is not passed on."""
        at = self.cursor
        index, tag = (at.index, at.tag) if at.open else (at.index + 1, None)
        element = at.element if at.open and at.element else None
        component = at.component if element is not None else None
        if "Unexpected end" in str(error):
            text = (
                "the interchange ends inside this segment: the segment terminator is "
                "missing (truncated?)"
            )
        else:
            text = "malformed EDIFACT syntax in this segment"
        return _fail([_at(ErrorCode.INVALID, text, tag, index, element, component)])


def _normalised(body: bytes) -> tuple[str, Characters]:
    """The text to tokenise (always starting with a UNA) and its service characters."""
    # Latin-1 maps every byte to one character, so nothing is lost before the syntax
    # identifier is known; values are decoded per UNB afterwards.
    text = body.decode("latin-1")
    if text.startswith("\xef\xbb\xbf"):  # a UTF-8 byte order mark
        text = text[3:]
    text = text.lstrip(" \t\r\n\x00")
    if text.startswith("UNA"):
        if len(text) < 9:
            raise _fail([_at(ErrorCode.INVALID, "UNA needs six service characters", "UNA")])
        _check_una(text[3:9])
    else:
        text = _DEFAULT_UNA + text
    characters = Characters.from_str(text[3:9])
    separators = {
        characters.component_separator,
        characters.data_separator,
        characters.escape_character,
        characters.segment_terminator,
    }
    rest = text[9:]
    for char in ("\r", "\n"):
        if char not in separators:
            rest = rest.replace(char, "")
    trailing = "".join(c for c in " \t\x00\x1a" if c not in separators)
    return text[:9] + rest.rstrip(trailing), characters


def _check_una(una: str) -> None:
    component, data, release, terminator = una[0], una[1], una[3], una[5]
    used = (component, data, release, terminator)
    if len(set(used)) != 4 or any(c.isalnum() for c in used):
        problem = "UNA service characters must differ from each other and from letters/digits"
    elif release == " ":
        problem = "a UNA without a release character is not supported; use ?"
    else:
        return
    raise _fail([_at(ErrorCode.INVALID, problem, "UNA")])


def _tokenised(text: str) -> list[_Tagged]:
    reader = _Reader()
    out: list[_Tagged] = []
    try:
        for segment in reader.parse(text):
            if isinstance(segment, _Tagged):
                out.append(segment)
    except EdifactError:
        raise
    except (EDISyntaxError, ValidationError, ValueError, IndexError) as exc:
        raise reader.failure(exc) from None
    return out


# ---------------------------------------------------------------- values


@dataclass(frozen=True)
class _Seg:
    """A segment with decoded values: ``elements[i][j]`` is element i+1, component j+1."""

    tag: str
    index: int
    qualifier: tuple[str, ...]
    elements: tuple[tuple[str, ...], ...]

    def get(self, element: int, component: int = 1) -> str:
        """A value, stripped; ``""`` when absent."""
        if element > len(self.elements):
            return ""
        values = self.elements[element - 1]
        return values[component - 1].strip() if component <= len(values) else ""

    def components(self, element: int) -> tuple[str, ...]:
        """The components of an element, stripped, padded to 7 (an address has 7)."""
        values = self.elements[element - 1] if element <= len(self.elements) else ()
        return tuple(v.strip() for v in values) + ("",) * max(0, 7 - len(values))

    def line(self, characters: Characters) -> str:
        """The element values rejoined with the separators they were split at (TXT)."""
        return characters.data_separator.join(
            characters.component_separator.join(values) for values in self.elements
        )

    def issue(
        self,
        code: ErrorCode,
        text: str,
        element: int | None = None,
        component: int | None = None,
        *,
        message: int | None = None,
    ) -> EdifactIssue:
        return _at(code, text, self.tag, self.index, element, component, message=message)


def _decoder(codec: str) -> Callable[[str], str | None]:
    def decode(value: str) -> str | None:
        if codec == "ascii":
            text: str | None = value if value.isascii() else None
        elif codec == "latin-1":
            text = _windows_c1(value)
        else:
            try:
                text = value.encode("latin-1").decode(codec)
            except UnicodeDecodeError:
                text = None
        if text is None:
            return None
        text = text.replace("\t", " ")
        # Control characters (NUL above all) have no place in a letter or in the database.
        return None if any(unicodedata.category(c) == "Cc" for c in text) else text

    return decode


def _windows_c1(value: str) -> str | None:
    """UNOC is ISO 8859-1; Windows senders put cp1252 quotes and dashes in 0x80-0x9F."""
    if not any("\x80" <= c <= "\x9f" for c in value):
        return value
    try:
        return "".join(
            bytes([ord(c)]).decode("cp1252") if "\x80" <= c <= "\x9f" else c for c in value
        )
    except UnicodeDecodeError:
        return None


def _decoded(raw: list[_Tagged], codec: str, syntax: str) -> list[_Seg]:
    decode = _decoder(codec)
    issues: list[Issue] = []
    out: list[_Seg] = []
    repertoire = (
        f"characters outside the {syntax} repertoire declared in UNB (use UNOC for "
        "ISO 8859-1, UNOW for UTF-8), or control characters"
    )
    for seg in raw:
        elements: list[tuple[str, ...]] = []
        for e, element in enumerate(seg.elements, start=1):
            values = [element] if isinstance(element, str) else list(element)
            decoded: list[str] = []
            for c, value in enumerate(values, start=1):
                text = decode(value)
                if text is None:
                    where = c if not isinstance(element, str) else None
                    issues.append(_at(ErrorCode.INVALID, repertoire, seg.tag, seg.index, e, where))
                    text = ""
                decoded.append(text)
            elements.append(tuple(decoded))
        out.append(_Seg(seg.tag, seg.index, seg.qualifier, tuple(elements)))
    if issues:
        raise _fail(issues)
    return out


# ---------------------------------------------------------------- envelope


@dataclass
class _Message:
    number: int
    unh: _Seg
    body: list[_Seg]
    unt: _Seg


@dataclass
class _Interchange:
    characters: Characters
    sender_agb: str | None
    control_ref: str
    prepared: datetime | None
    messages: list[_Message] = field(default_factory=list)


def _read(body: bytes) -> tuple[_Interchange, list[Issue]]:
    """Syntax and envelope; raises at once when nothing further can be read."""
    text, characters = _normalised(body)
    raw = _tokenised(text)
    if not raw:
        raise _fail([_at(ErrorCode.REQUIRED, "the interchange is empty", "UNB")])
    first = raw[0]
    if first.tag != "UNB":
        raise _fail(
            [
                _at(
                    ErrorCode.INVALID,
                    "an interchange starts with UNB (after an optional UNA)",
                    first.tag,
                    first.index,
                )
            ]
        )
    syntax_element = first.elements[0] if first.elements else ""
    syntax = (syntax_element if isinstance(syntax_element, str) else syntax_element[0]).strip()
    codec = _CODECS.get(syntax)
    if codec is None:
        raise _fail(
            [
                _at(
                    ErrorCode.VALUE if syntax else ErrorCode.REQUIRED,
                    f"the syntax identifier must be one of {', '.join(_CODECS)}",
                    "UNB",
                    first.index,
                    1,
                    1,
                )
            ]
        )
    segments = _decoded(raw, codec, syntax)
    issues: list[Issue] = []
    interchange = _envelope(segments, characters, issues)
    return interchange, issues


def _envelope(segments: list[_Seg], characters: Characters, issues: list[Issue]) -> _Interchange:
    unb = segments[0]
    sender = unb.get(2)
    if not sender:
        issues.append(unb.issue(ErrorCode.REQUIRED, "the sender identification is required", 2, 1))
    elif not is_valid_agb(sender):
        issues.append(
            unb.issue(
                ErrorCode.VALUE,
                "the sender identification must be the sender's AGB code (8 digits)",
                2,
                1,
            )
        )
    control_ref = unb.get(5)
    if not control_ref:
        issues.append(
            unb.issue(ErrorCode.REQUIRED, "the interchange control reference is required", 5)
        )
    prepared = _unb_moment(unb, issues)
    interchange = _Interchange(
        characters, sender if is_valid_agb(sender) else None, control_ref, prepared
    )

    open_message: tuple[int, _Seg, list[_Seg]] | None = None
    started = 0
    unz: _Seg | None = None
    for seg in segments[1:]:
        if unz is not None:
            issues.append(seg.issue(ErrorCode.INVALID, "nothing may follow UNZ"))
            break
        if seg.tag in ("UNH", "UNZ") and open_message is not None:
            number, unh, _ = open_message
            issues.append(
                seg.issue(
                    ErrorCode.INVALID,
                    f"UNT missing: message {number} (UNH at segment {unh.index}) is not "
                    f"closed before this {seg.tag}",
                )
            )
            open_message = None
        if seg.tag == "UNH":
            started += 1
            open_message = (started, seg, [])
        elif seg.tag == "UNT":
            if open_message is None:
                issues.append(seg.issue(ErrorCode.INVALID, "UNT without a UNH before it"))
            else:
                number, unh, body = open_message
                interchange.messages.append(_Message(number, unh, body, seg))
                open_message = None
        elif seg.tag == "UNZ":
            unz = seg
        elif seg.tag in ("UNG", "UNE"):
            issues.append(
                seg.issue(ErrorCode.INVALID, "functional groups (UNG..UNE) are not supported")
            )
        elif seg.tag == "UNB":
            issues.append(seg.issue(ErrorCode.INVALID, "one interchange (UNB..UNZ) per request"))
        elif open_message is None:
            issues.append(seg.issue(ErrorCode.INVALID, "segment outside a message (UNH..UNT)"))
        else:
            open_message[2].append(seg)
    if open_message is not None:
        number, unh, _ = open_message
        last = segments[-1]
        issues.append(
            last.issue(
                ErrorCode.INVALID,
                f"UNT missing: message {number} (UNH at segment {unh.index}) is not closed "
                "at the end of the interchange",
            )
        )
    if unz is None:
        issues.append(_at(ErrorCode.INVALID, "UNZ missing: the interchange is incomplete", "UNZ"))
    else:
        _check_unz(unz, started, control_ref, issues)
    if started == 0:
        issues.append(_at(ErrorCode.REQUIRED, "the interchange holds no message (UNH..UNT)", "UNH"))
    references: dict[str, int] = {}
    for message in interchange.messages:
        _check_message_envelope(message, references, issues)
    return interchange


def _check_unz(unz: _Seg, started: int, control_ref: str, issues: list[Issue]) -> None:
    count = unz.get(1)
    if not _digits(count, 6):
        issues.append(unz.issue(ErrorCode.INVALID, "UNZ needs the number of messages", 1))
    elif int(count) != started:
        issues.append(
            unz.issue(
                ErrorCode.INVALID,
                f"UNZ counts {int(count)} messages, the interchange holds {started}",
                1,
            )
        )
    if unz.get(2) != control_ref:
        issues.append(
            unz.issue(
                ErrorCode.INVALID,
                "the UNZ control reference differs from the one in UNB",
                2,
            )
        )


def _check_message_envelope(
    message: _Message, references: dict[str, int], issues: list[Issue]
) -> None:
    unh, unt, n = message.unh, message.unt, message.number
    reference = unh.get(1)
    if not reference:
        issues.append(unh.issue(ErrorCode.REQUIRED, "the message reference is required", 1))
    elif reference in references:
        issues.append(
            unh.issue(
                ErrorCode.INVALID,
                f"message reference used before, by message {references[reference]}",
                1,
            )
        )
    else:
        references[reference] = n
    message_type = unh.get(2)
    if message_type != MESSAGE_TYPE:
        shown = f"{message_type} is" if _MESSAGE_TYPE.match(message_type) else "this type is"
        issues.append(
            unh.issue(
                ErrorCode.VALUE,
                f"message type {shown} not supported here; send {MESSAGE_TYPE}",
                2,
                1,
            )
        )
    count, expected = unt.get(1), len(message.body) + 2
    if not _digits(count, 10):
        issues.append(unt.issue(ErrorCode.INVALID, "UNT needs the number of segments", 1))
    elif int(count) != expected:
        issues.append(
            unt.issue(
                ErrorCode.INVALID,
                f"UNT counts {int(count)} segments, message {n} has {expected} (UNH..UNT)",
                1,
            )
        )
    if unt.get(2) != reference:
        issues.append(
            unt.issue(ErrorCode.INVALID, "the UNT message reference differs from UNH's", 2)
        )


def _unb_moment(unb: _Seg, issues: list[Issue]) -> datetime | None:
    day, time = unb.get(4, 1), unb.get(4, 2)
    if len(day) not in (6, 8) or not _digits(day, 8):
        issues.append(
            unb.issue(ErrorCode.VALUE, "the date of preparation is yymmdd or ccyymmdd", 4, 1)
        )
        return None
    year = int(day[:-4]) + (2000 if len(day) == 6 else 0)
    moment = _moment(year, day[-4:-2], day[-2:], time[:2] or "00", time[2:] or "00")
    if moment is None or (time and (len(time) != 4 or not _digits(time, 4))):
        issues.append(unb.issue(ErrorCode.VALUE, "not a valid date and time (hhmm)", 4))
        return None
    return moment


def _moment(year: int, month: str, day: str, hour: str, minute: str) -> datetime | None:
    """Dutch local time as an aware datetime; ``None`` if it is no date and time."""
    if not all(_digits(p, 2) for p in (month, day, hour, minute)):
        return None
    try:
        return datetime(year, int(month), int(day), int(hour), int(minute), tzinfo=_AMSTERDAM)
    except ValueError:
        return None


def _digits(value: str, most: int) -> bool:
    """1 to ``most`` ASCII digits (``str.isdigit`` also takes superscripts and other scripts)."""
    return 0 < len(value) <= most and value.isascii() and value.isdigit()


# ---------------------------------------------------------------- the MEDVRI letter


def parse_interchange(body: bytes, content_type: str) -> list[CaseMessage]:
    """Every MEDVRI message in an interchange as a :class:`CaseMessage`, in order.

    Raises :class:`EdifactError` with every problem found, each naming its segment (tag
    and index), element and component; render it with :func:`error_response`.
    """
    check_media_type(content_type)
    if len(body) > MAX_BODY_BYTES:
        raise EdifactError(
            ErrorCode.TOO_LARGE, f"an interchange may hold at most {MAX_BODY_BYTES} bytes"
        )
    interchange, issues = _read(body)
    out: list[CaseMessage] = []
    for message in interchange.messages:
        case_message = _case_message(interchange, message, issues)
        if case_message is not None:
            out.append(case_message)
    if issues:
        raise _fail(issues)
    logger.debug(
        "edifact interchange %s from AGB %s: %d message(s)",
        interchange.control_ref,
        interchange.sender_agb,
        len(out),
    )
    return out


@dataclass(frozen=True)
class _PatientData:
    patient: Patient
    gender: str | None
    address: dict[str, Any]
    phone: str | None
    family: str | None
    given: str | None


def _case_message(
    interchange: _Interchange, message: _Message, issues: list[Issue]
) -> CaseMessage | None:
    before = len(issues)
    n = message.number
    found: dict[str, list[_Seg]] = {}
    for seg in message.body:
        if seg.tag in _MEDVRI_TAGS:
            found.setdefault(seg.tag, []).append(seg)
        else:
            issues.append(
                seg.issue(
                    ErrorCode.INVALID,
                    f"not a MEDVRI segment here; expected {', '.join(sorted(_MEDVRI_TAGS))}",
                    message=n,
                )
            )
    gga = _one(found, "GGA", n, issues, "the sender (GGA) is required")
    pid = _one(found, "PID", n, issues, "the patient (PID, with BSN) is required")
    pad = _one(found, "PAD", n, issues, "the patient's address (PAD, with postcode) is required")
    det = _one(found, "DET", n, issues)
    ggo = _one(found, "GGO", n, issues)
    sender = _sender(interchange, gga, n, issues)
    patient = _patient(pid, pad, n, issues) if pid and pad else None
    sent = _sent(det, n, issues) if det else interchange.prepared
    care_type, priority, text = _letter(found.get("TXT", []), interchange.characters, n, issues)
    if len(issues) > before or not (sender and patient and text and interchange.sender_agb):
        return None
    identifier = Identifier(
        IDENTIFIER_SYSTEM_PREFIX + interchange.sender_agb,
        f"{interchange.control_ref}/{message.unh.get(1)}",
    )
    addressee = _addressee(ggo)
    resource = _resource(identifier, care_type, priority, patient, sender, text, sent, addressee)
    return CaseMessage(
        identifier=identifier,
        care_type=care_type,
        patient=patient.patient,
        sender=sender,
        text=text,
        priority=priority,
        sent=sent,
        recipient_ura=None,
        resource=resource,
    )


def _one(
    found: dict[str, list[_Seg]],
    tag: str,
    message: int,
    issues: list[Issue],
    required: str | None = None,
) -> _Seg | None:
    segments = found.get(tag, [])
    if not segments:
        if required:
            issues.append(_at(ErrorCode.REQUIRED, required, tag, message=message))
        return None
    for extra in segments[1:]:
        issues.append(
            extra.issue(ErrorCode.INVALID, f"{tag} may occur once per message", message=message)
        )
    return segments[0]


def _sender(
    interchange: _Interchange, gga: _Seg | None, message: int, issues: list[Issue]
) -> Party | None:
    if gga is None:
        return None
    name = gga.get(1)
    if not name:
        issues.append(
            gga.issue(ErrorCode.REQUIRED, "the sender's name is required", 1, message=message)
        )
        return None
    return Party(name=name, organisation_name=gga.get(3) or None, agb=interchange.sender_agb)


def _patient(pid: _Seg, pad: _Seg, message: int, issues: list[Issue]) -> _PatientData | None:
    bsn = _bsn(pid, message, issues)
    birth_date = _birth_date(pid, message, issues)
    street, number, _, city, raw_postcode, _, country = pad.components(1)
    postcode = normalise_postcode(raw_postcode) if raw_postcode else None
    if not raw_postcode:
        issues.append(
            pad.issue(
                ErrorCode.REQUIRED,
                "the postcode is required (routing is by postcode)",
                1,
                5,
                message=message,
            )
        )
    elif postcode is None:
        issues.append(
            pad.issue(
                ErrorCode.VALUE,
                "not a Dutch postcode (four digits and two letters, e.g. 1092 AB)",
                1,
                5,
                message=message,
            )
        )
    if bsn is None or postcode is None:
        return None
    family, given, display = _name(pid.components(3))
    address: dict[str, Any] = {"use": "home"}
    if line := " ".join(p for p in (street, number) if p):
        address["line"] = [line]
    if city:
        address["city"] = city
    address["postalCode"] = format_postcode(postcode)
    if country:
        address["country"] = country
    return _PatientData(
        patient=Patient(bsn=bsn, postcode=postcode, name=display, birth_date=birth_date),
        gender=_GENDER.get(pid.get(2).upper()),
        address=address,
        phone=pad.get(2) or None,
        family=family,
        given=given,
    )


def _bsn(pid: _Seg, message: int, issues: list[Issue]) -> str | None:
    raw = pid.get(5)
    match = _BSN.match(raw)
    if not raw:
        problem = ErrorCode.REQUIRED, "the BSN is required in PID element 5 (BSN + 9 digits)"
    elif match is None:
        problem = ErrorCode.VALUE, "not a BSN: 9 digits, optionally after 'BSN'"
    elif not is_valid_bsn(match.group(1)):
        problem = ErrorCode.VALUE, "the BSN fails the 11-test"
    else:
        return match.group(1)
    issues.append(pid.issue(*problem, 5, message=message))
    return None


def _birth_date(pid: _Seg, message: int, issues: list[Issue]) -> date | None:
    parts = [p for p in pid.components(1) if p]
    if not parts:
        return None
    if len(parts) == 1 and len(parts[0]) == 8:
        parts = [parts[0][:4], parts[0][4:6], parts[0][6:]]
    if len(parts) == 3 and len(parts[0]) == 4 and all(_digits(p, 4) for p in parts):
        try:
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
        except ValueError:
            pass
    issues.append(pid.issue(ErrorCode.VALUE, "the birth date is ccyy:mm:dd", 1, message=message))
    return None


def _name(parts: tuple[str, ...]) -> tuple[str | None, str | None, str | None]:
    """(family, given, display) of a Medeur patient name.

    The display is given name (or initials), own surname, then partner's surname
    ("P. van Jansen-van de Berg"): the Medeur name has no code for the name to use.
    """
    # A prefix ("van de") without its surname is no name.
    partner = " ".join(p for p in (parts[1], parts[0]) if p) if parts[0] else ""
    own = " ".join(p for p in (parts[3], parts[2]) if p) if parts[2] else ""
    family = "-".join(p for p in (own, partner) if p) or None
    given = parts[4] or parts[5] or None
    display = " ".join(p for p in (given, family) if p) or None
    return family, given, display


def _sent(det: _Seg, message: int, issues: list[Issue]) -> datetime | None:
    year, month, day = det.components(1)[:3]
    hour, minute = det.components(2)[:2]
    if len(year) == 2 and _digits(year, 2):
        full_year = 2000 + int(year)
    elif len(year) == 4 and _digits(year, 4):
        full_year = int(year)
    else:
        full_year = 0
    moment = _moment(full_year, month, day, hour or "00", minute or "00") if full_year else None
    if moment is None:
        issues.append(
            det.issue(
                ErrorCode.VALUE,
                "the letter's date and time are yy:mm:dd and hh:mm",
                message=message,
            )
        )
    return moment


def _letter(
    txts: list[_Seg], characters: Characters, message: int, issues: list[Issue]
) -> tuple[CareType, Priority, str | None]:
    """Care type, priority and text from the TXT lines (leading header lines taken out)."""
    lines = [(seg, seg.line(characters).rstrip()) for seg in txts]
    care_type: CareType | None = None
    priority = Priority.ROUTINE
    start = 0
    while start < len(lines) and (header := _HEADER.match(lines[start][1])):
        seg, key, value = lines[start][0], header.group(1).lower(), header.group(2)
        if key == "zorgsoort":
            found_type = _care_type(value)
            if found_type is None:
                issues.append(
                    seg.issue(
                        ErrorCode.VALUE,
                        f"unknown care type in 'Zorgsoort:'; allowed: {_CARE_CODES}",
                        1,
                        message=message,
                    )
                )
            elif care_type not in (None, found_type):
                issues.append(
                    seg.issue(
                        ErrorCode.INVALID, "more than one care type given", 1, message=message
                    )
                )
            else:
                care_type = found_type
        else:
            found = _PRIORITY_WORDS.get(" ".join(value.lower().split()))
            if found is None:
                issues.append(
                    seg.issue(
                        ErrorCode.VALUE,
                        "unknown 'Urgentie:'; allowed: " + ", ".join(_PRIORITY_WORDS),
                        1,
                        message=message,
                    )
                )
            else:
                priority = found
        start += 1
    body = [line for _, line in lines[start:]]
    text = "\n".join(body).strip("\n")
    if not text.strip():
        issues.append(
            _at(ErrorCode.REQUIRED, "the letter has no text (TXT)", "TXT", message=message)
        )
    return care_type or CareType.WIJKVERPLEGING, priority, text if text.strip() else None


def _care_type(value: str) -> CareType | None:
    key = re.sub(r"[\s_]+", "-", value.strip().lower())
    for care_type in CareType:
        if key in (care_type.value, re.sub(r"\s+", "-", care_type.display.lower())):
            return care_type
    return None


def _addressee(ggo: _Seg | None) -> str | None:
    if ggo is None:
        return None
    return ", ".join(p for p in (ggo.get(1), ggo.get(2), ggo.get(3)) if p) or None


def _resource(
    identifier: Identifier,
    care_type: CareType,
    priority: Priority,
    patient: _PatientData,
    sender: Party,
    text: str,
    sent: datetime | None,
    addressee: str | None,
) -> dict[str, Any]:
    """The letter as the normalised R4 Communication (what ``fhir-r4`` would accept)."""
    person: dict[str, Any] = {
        "resourceType": "Patient",
        "id": _PATIENT_ID,
        "identifier": [{"system": BSN_SYSTEM, "value": patient.patient.bsn}],
    }
    if patient.patient.name:
        name: dict[str, Any] = {"text": patient.patient.name}
        if patient.family:
            name["family"] = patient.family
        if patient.given:
            name["given"] = [patient.given]
        person["name"] = [name]
    if patient.phone:
        person["telecom"] = [{"system": "phone", "value": patient.phone}]
    if patient.gender:
        person["gender"] = patient.gender
    if patient.patient.birth_date:
        person["birthDate"] = patient.patient.birth_date.isoformat()
    person["address"] = [patient.address]
    practitioner = {
        "resourceType": "Practitioner",
        "id": _PRACTITIONER_ID,
        "identifier": [{"system": AGB_SYSTEM, "value": sender.agb}],
        "name": [{"text": sender.name}],
    }
    contained: list[dict[str, Any]] = [person, practitioner]
    sender_id = _PRACTITIONER_ID
    if sender.organisation_name:
        sender_id = _ROLE_ID
        contained.append(
            {
                "resourceType": "Organization",
                "id": _ORGANIZATION_ID,
                "name": sender.organisation_name,
            }
        )
        contained.append(
            {
                "resourceType": "PractitionerRole",
                "id": _ROLE_ID,
                "practitioner": {"reference": f"#{_PRACTITIONER_ID}", "display": sender.name},
                "organization": {
                    "reference": f"#{_ORGANIZATION_ID}",
                    "display": sender.organisation_name,
                },
            }
        )
    coding = {"system": CARE_TYPE_SYSTEM, "code": care_type.value, "display": care_type.display}
    out: dict[str, Any] = {
        "resourceType": "Communication",
        "contained": contained,
        "identifier": [{"system": identifier.system, "value": identifier.value}],
        "status": "in-progress",
        "category": [{"coding": [coding]}],
        "priority": priority.value,
        "subject": {"reference": f"#{_PATIENT_ID}", "type": "Patient"},
    }
    if sent is not None:
        out["sent"] = fhir_instant(sent)
    display = sender.name + (f" ({sender.organisation_name})" if sender.organisation_name else "")
    out["sender"] = {"reference": f"#{sender_id}", "display": display}
    out["payload"] = [{"contentString": text}]
    if addressee:
        out["note"] = [{"text": f"Geadresseerd aan (EDIFACT GGO): {addressee}"}]
    return out


# ---------------------------------------------------------------- rendering


def render_reply(
    reply: Reply,
    *,
    sender_id: str,
    recipient_agb: str,
    control_ref: str,
    now: datetime,
    recipient_name: str | None = None,
    files_base: str = "",
) -> bytes:
    """A nurse's answer as a MEDVRI interchange (UNOC, ISO 8859-1) for the practice.

    A letter cannot carry a file: each file of the reply is a ``Bijlage:`` text line with
    its title, type, size and where to fetch it (``{files_base}/Binary/{id}``, with the
    practice's own token).

    ``sender_id`` goes in UNB as the sender (Wijkbrug's or the provider's code; give an
    AGB code for the practice to read it back as one), ``recipient_agb`` is the practice
    (UNB recipient), ``control_ref`` the interchange and message reference (unique per
    sender; 1-14 letters or digits). The text opens with ``Zorgsoort:`` and ``Casus:``
    lines, is wrapped at 70 characters and released with ``?``; characters outside
    ISO 8859-1 are transliterated (``ł`` -> ``?``, ``ő`` -> ``o``, curly quotes -> ').
    Naive datetimes are taken as UTC; dates are written in Dutch local time.
    """
    if not _PARTY_ID.match(sender_id):
        raise ValueError("sender_id must be 1-35 letters or digits")
    if not is_valid_agb(recipient_agb):
        raise ValueError("recipient_agb must be an AGB code (8 digits)")
    if not _CONTROL_REF.match(control_ref):
        raise ValueError("control_ref must be 1-14 letters or digits")
    prepared, sent = _local(now), _local(reply.sent)
    sender = reply.sender
    body: list[Segment] = [
        Segment("UNH", control_ref, [MESSAGE_TYPE, "1"]),
        _segment("GGA", _field(sender.name), "", _field(sender.organisation_name or "")),
        Segment("DET", [f"{sent:%y}", f"{sent:%m}", f"{sent:%d}"], [f"{sent:%H}", f"{sent:%M}"]),
    ]
    if reply.patient is not None:
        body.extend(_patient_segments(reply.patient))
    body.extend(Segment("TXT", line) for line in _reply_lines(reply, files_base))
    body.append(_segment("GGO", _field(recipient_name or f"AGB {recipient_agb}")))
    body.append(Segment("UNT", str(len(body) + 1), control_ref))
    header = Segment(
        "UNB",
        list(_WRITE_SYNTAX),
        sender_id,
        recipient_agb,
        [f"{prepared:%y%m%d}", f"{prepared:%H%M}"],
        control_ref,
    )
    trailer = Segment("UNZ", "1", control_ref)
    text = Serializer(_WRITE_CHARACTERS).serialize(
        [header, *body, trailer], with_una_header=True, break_lines=True
    )
    return text.encode("latin-1")


def _segment(tag: str, *elements: Element) -> Segment:
    """A segment without trailing empty elements."""
    values = list(elements)
    while values and values[-1] in ("", []):
        values.pop()
    return Segment(tag, *values)


def _patient_segments(patient: Patient) -> list[Segment]:
    born = patient.birth_date
    birth: Element = [f"{born:%Y}", f"{born:%m}", f"{born:%d}"] if born else ""
    # The canonical name is one display string: it goes in "own surname", which is what
    # a reader shows when the other name parts are empty.
    name: Element = ["", "", _field(patient.name)] if patient.name else ""
    return [
        _segment("PID", birth, "", name, "", f"BSN{patient.bsn}"),
        _segment("PAD", ["", "", "", "", patient.postcode]),
    ]


def _reply_lines(reply: Reply, files_base: str = "") -> list[str]:
    lines = [f"Zorgsoort: {reply.care_type.value}"]
    if reply.case_number:
        lines.append(_field(f"Casus: {reply.case_number}"))
    lines.append("")
    paragraphs = _latin1(reply.text).split("\n")
    for att in reply.attachments:
        paragraphs.append(
            f"Bijlage: {_field(att.title)} ({att.content_type}, {att.size} bytes) "
            f"{files_base}/Binary/{att.id}"
        )
    for paragraph in paragraphs:
        wrapped = textwrap.wrap(paragraph, TXT_WIDTH, break_long_words=True, break_on_hyphens=False)
        lines.extend(wrapped or [""])
    return lines


def _local(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(_AMSTERDAM)


def _field(value: str) -> str:
    """A one-line value in the ISO 8859-1 repertoire."""
    return " ".join(_latin1(value).split())


_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": ",",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u20ac": "EUR",
        "\t": " ",
        "\r": "",
    }
)


def _latin1(value: str) -> str:
    """Text in ISO 8859-1 (printable), transliterating what is not; newlines are kept."""
    out: list[str] = []
    for char in value.translate(_TYPOGRAPHY):
        if char == "\n" or _printable_latin1(char):
            out.append(char)
        elif unicodedata.category(char).startswith("C"):
            continue
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if _printable_latin1(c))
            out.append(base or "?")
    return "".join(out)


def _printable_latin1(char: str) -> bool:
    return " " <= char <= "~" or "\xa0" <= char <= "\xff"
