"""The one name policy: what a person's name may be, and the file-name slug of a name.

Every way a name comes in (``faceprint enroll NAME``, ``people rename``, ``enroll-dir``'s folder names,
``people import``, ``unknowns enroll``, the service's forms) goes through :func:`person_name`, because a
name travels on: it is printed on terminals, written into JSON events, drawn on images and used in file
names. Refused, with the reason:

- empty names, and names over ``MAX_NAME_LENGTH`` characters;
- control characters: newlines, tabs, the ESC of terminal escape sequences (a name that rewrites the
  terminal), bidirectional overrides and other invisible format characters (a name that displays as
  another one); only the zero-width joiner stays, which emoji sequences need;
- path separators (``/``, ``\\``) and a leading dot (``..``, ``.hidden``), so a name never names a place
  in a file system;
- ``unknown``, which is what faces matching nobody are called.

Spaces are tidied (trimmed, runs collapsed) and the text NFC-normalised, so the same name typed twice is
stored once. Names already stored by older versions are never re-checked on lookup (they stay reachable
by ``people delete``), and anything that makes a file name from a name uses :func:`slug`.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from faceprint.errors import InvalidNameError
from faceprint.types import UNKNOWN

MAX_NAME_LENGTH = 100
_ALLOWED_FORMAT = {"\u200d"}  # zero-width joiner (emoji sequences)
_SLUG_UNSAFE = re.compile(r"[^\w.-]+")


def person_name(name: object) -> str:
    """``name`` as a gallery stores it, or InvalidNameError saying what is wrong with it."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a person's name must be text, got {type(name).__name__}")
    text = unicodedata.normalize("NFC", name)
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Zl", "Zp") or (category == "Cf" and char not in _ALLOWED_FORMAT):
            raise InvalidNameError(
                f"a person's name cannot contain control or invisible characters (found U+{ord(char):04X} "
                f"in {printable(text)})"
            )
    cleaned = " ".join(text.split())  # every kind of space (controls are refused above)
    if not cleaned:
        raise InvalidNameError("a person's name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"a person's name can have at most {MAX_NAME_LENGTH} characters, this one has {len(cleaned)}"
        )
    if "/" in cleaned or "\\" in cleaned:
        raise InvalidNameError(f"a person's name cannot contain / or \\ ({printable(cleaned)})")
    if cleaned.startswith("."):
        raise InvalidNameError(f"a person's name cannot start with a dot ({printable(cleaned)})")
    if cleaned.lower() == UNKNOWN:
        raise InvalidNameError(f"{UNKNOWN!r} is reserved for faces that match nobody; choose another name")
    return cleaned


def slug(name: str, max_length: int = 60) -> str:
    """A file-name-safe form of any name (even one stored before this policy): letters, digits, ``_``,
    ``.`` and ``-`` kept, anything else ``_``, no leading dot; names that had to change get a short hash
    of the original, so "AC/DC" and "AC_DC" never share a file."""
    safe = _SLUG_UNSAFE.sub("_", unicodedata.normalize("NFC", name)).lstrip(".")[:max_length] or "person"
    if safe != name:
        safe += "-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return safe


def printable(text: str) -> str:
    """A name as it can be printed safely, in quotes: control characters escaped, cut to 60 characters
    (for names refused, or stored by versions before this policy)."""
    shown = text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text
    return "'" + shown[:60] + ("..." if len(shown) > 60 else "") + "'"


def shown(name: str) -> str:
    """A stored name as a terminal may print it: control and invisible characters (possible in names
    stored before this policy) escaped as ``\\x1b``, ``\\u202e``; every other character as it is."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")
        or (unicodedata.category(char) == "Cf" and char not in _ALLOWED_FORMAT)
        else char
        for char in name
    )
