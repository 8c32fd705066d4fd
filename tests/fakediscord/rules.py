"""Discord's limits on what a bot sends, as (path, code, message) problems for a 50035 "Invalid Form Body".

Only the rules a bot is likely to trip over: message size limits, component layout, custom ids, modal and
command-sync limits. Paths mirror Discord's nested ``errors`` object.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from . import payloads as p

_NAME_RE = re.compile(r"^[-_'\w]{1,32}$")
_SELECTS = {3, 5, 6, 7, 8}  # select menus fill a whole action row


def walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every component, depth first, including v2 containers' children and section accessories."""
    for c in components or []:
        yield c
        yield from walk_components(c.get("components") or [])
        if isinstance(c.get("accessory"), dict):
            yield c["accessory"]
        if isinstance(c.get("component"), dict):
            yield c["component"]


def form_errors(problems: list[tuple[tuple, str, str]]) -> dict[str, Any]:
    """Nest (path, code, message) problems the way Discord's 50035 "Invalid Form Body" does."""
    errors: dict[str, Any] = {}
    for path, code, message in problems:
        node = errors
        for key in path:
            node = node.setdefault(str(key), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return errors


def _max_len(problems: list, path: tuple, value: Any, limit: int) -> None:
    if value is not None and len(value) > limit:
        problems.append((path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."))


def validate_message(body: dict[str, Any]) -> list[tuple[tuple, str, str]]:
    """Check a message body against Discord's limits; returns (path, code, message) problems."""
    problems: list[tuple[tuple, str, str]] = []
    _max_len(problems, ("content",), body.get("content"), 2000)
    embeds = body.get("embeds") or []
    _max_len(problems, ("embeds",), embeds, 10)
    for i, e in enumerate(embeds):
        _max_len(problems, ("embeds", i, "title"), e.get("title"), 256)
        _max_len(problems, ("embeds", i, "description"), e.get("description"), 4096)
        _max_len(problems, ("embeds", i, "fields"), e.get("fields"), 25)
        for j, f in enumerate(e.get("fields") or []):
            _max_len(problems, ("embeds", i, "fields", j, "name"), f.get("name"), 256)
            _max_len(problems, ("embeds", i, "fields", j, "value"), f.get("value"), 1024)
        _max_len(problems, ("embeds", i, "footer", "text"), (e.get("footer") or {}).get("text"), 2048)
    total = sum(
        len(e.get("title") or "")
        + len(e.get("description") or "")
        + len((e.get("footer") or {}).get("text") or "")
        + len((e.get("author") or {}).get("name") or "")
        + sum(len(f.get("name", "")) + len(f.get("value", "")) for f in e.get("fields") or [])
        for e in embeds
    )
    if total > 6000:
        problems.append((("embeds",), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"))
    rows = body.get("components") or []
    if not (body.get("flags") or 0) & p.COMPONENTS_V2:  # v2 layouts have their own (looser) rules
        _max_len(problems, ("components",), rows, 5)
        for i, row in enumerate(rows):
            children = row.get("components") or []
            _max_len(problems, ("components", i, "components"), children, 5)
            if len(children) > 1 and any(c.get("type") in _SELECTS for c in children):
                problems.append(
                    (
                        ("components", i, "components"),
                        "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                        "The specified component exceeds the maximum width",
                    )
                )
    seen: set[str] = set()
    for c in walk_components(rows):
        cid = c.get("custom_id")
        if cid is None:
            continue
        _max_len(problems, ("components", "custom_id"), cid, 100)
        if cid in seen:
            problems.append(
                (
                    ("components", "custom_id"),
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    f"Component custom id cannot be duplicated: {cid!r}",
                )
            )
        seen.add(cid)
        _max_len(problems, ("components", "label"), c.get("label"), 80)
    return problems


def validate_modal(data: dict[str, Any]) -> list[tuple[tuple, str, str]]:
    """Title, custom_id and size limits of a modal (interaction callback type 9)."""
    problems: list[tuple[tuple, str, str]] = []
    _max_len(problems, ("title",), data.get("title"), 45)
    _max_len(problems, ("custom_id",), data.get("custom_id"), 100)
    _max_len(problems, ("components",), data.get("components"), 5)
    return problems


def validate_choices(data: dict[str, Any]) -> list[tuple[tuple, str, str]]:
    """Autocomplete choices (interaction callback type 8): at most 25, names 1-100 characters, values at most 100."""
    problems: list[tuple[tuple, str, str]] = []
    choices = data.get("choices")
    if not isinstance(choices, list):
        return [(("choices",), "BASE_TYPE_REQUIRED", "This field is required")]
    _max_len(problems, ("choices",), choices, 25)
    for i, choice in enumerate(choices):
        if not 1 <= len(str(choice.get("name", ""))) <= 100:
            problems.append((("choices", i, "name"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
        if isinstance(choice.get("value"), str):
            _max_len(problems, ("choices", i, "value"), choice["value"], 100)
    return problems


def validate_command(cmd: dict[str, Any], path: tuple = ()) -> list[tuple[tuple, str, str]]:
    """Names, descriptions and option counts of a command (or option) as Discord checks them on sync."""
    problems: list[tuple[tuple, str, str]] = []
    name = cmd.get("name", "")
    bad_name = not _NAME_RE.match(name) or name != name.lower()
    # User and message context menus (types 2 and 3) may use spaces and capitals.
    if cmd.get("type", 1) in (1, 2, 3, 4, 5, 10) and bad_name and (cmd.get("type", 1) not in (2, 3) or path):
        problems.append(((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", f"Invalid name {name!r}"))
    if cmd.get("type", 1) not in (2, 3) or path:
        desc = cmd.get("description") or ""
        if not 1 <= len(desc) <= 100:
            problems.append(((*path, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
    problems += _localizations(cmd, path, strict_names=cmd.get("type", 1) not in (2, 3) or bool(path))
    options = cmd.get("options") or []
    _max_len(problems, (*path, "options"), options, 25)
    _max_len(problems, (*path, "choices"), cmd.get("choices"), 25)
    for i, choice in enumerate(cmd.get("choices") or []):
        for locale, value in (choice.get("name_localizations") or {}).items():
            if locale not in LOCALES:
                problems.append(((*path, "choices", i, "name_localizations"), "INVALID_LOCALE", f"{locale!r}"))
            elif not 1 <= len(value) <= 100:
                problems.append(((*path, "choices", i, "name_localizations", locale), "BASE_TYPE_BAD_LENGTH", "1-100"))
    for i, opt in enumerate(options):
        problems += validate_command(opt, (*path, "options", i))
    return problems


# Discord's locales (https://discord.com/developers/docs/reference#locales): localizations keyed otherwise fail.
LOCALES = frozenset(
    [
        "id",
        "da",
        "de",
        "en-GB",
        "en-US",
        "es-ES",
        "es-419",
        "fr",
        "hr",
        "it",
        "lt",
        "hu",
        "nl",
        "no",
        "pl",
        "pt-BR",
        "ro",
        "fi",
        "sv-SE",
        "vi",
        "tr",
        "cs",
        "el",
        "bg",
        "ru",
        "uk",
        "hi",
        "th",
        "zh-CN",
        "ja",
        "zh-TW",
        "ko",
    ]
)


def _localizations(cmd: dict[str, Any], path: tuple, *, strict_names: bool) -> list[tuple[tuple, str, str]]:
    """A command's or option's name_localizations and description_localizations, checked like its name and
    description: a known locale, and (for slash commands and options) a lowercase name of 1-32 word characters."""
    problems: list[tuple[tuple, str, str]] = []
    for field in ("name_localizations", "description_localizations"):
        for locale, value in (cmd.get(field) or {}).items():
            where = (*path, field, locale)
            if locale not in LOCALES:
                problems.append((where, "INVALID_LOCALE", f"Invalid locale {locale!r}"))
            elif (
                field == "name_localizations" and strict_names and (not _NAME_RE.match(value) or value != value.lower())
            ):
                problems.append((where, "APPLICATION_COMMAND_INVALID_NAME", f"Invalid name {value!r}"))
            elif field == "description_localizations" and not 1 <= len(value) <= 100:
                problems.append((where, "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."))
    return problems
