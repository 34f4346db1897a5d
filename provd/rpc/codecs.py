"""The codecs every provd service speaks: protobuf binary, and JSON that refuses
unknown enum names.

connectrpc's JSON codec parses with `ignore_unknown_fields=True`, so that clients built
against a newer schema can still call. But google.protobuf's parser applies that flag
to enum *names* too: an unknown name (a typo such as `"DESTORY"`, or
`"JOB_STATUS_BOGUS"`) silently becomes the field's default, and a build meant to
destroy a workspace starts it. Here unknown fields are still ignored, while an enum
string that is neither one of the enum's names nor a number is `invalid_argument`
naming the field by its JSON path (`workspaceBuild.metadata.workspaceTransition`).

The codec is named "json", so it serves every JSON path at once: Connect unary
(POST and GET), Connect streaming, gRPC+json and gRPC-web+json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

from connectrpc.code import Code
from connectrpc.codec import Codec
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

# google.protobuf's own limit for JSON messages.
MAX_DEPTH = 100
# Well-known types have JSON forms of their own (a Timestamp is a string, a Struct an
# object of anything); google.protobuf checks them, and none of them holds an enum
# that a name could be unknown for but NullValue, which only takes null.
_WELL_KNOWN = "google.protobuf."


class StrictEnumJSONCodec:
    """Protobuf JSON: unknown fields ignored, unknown enum names refused."""

    def __init__(self) -> None:
        self._encoder: Codec[Any, Any] = google_protobuf_json_codec()

    def name(self) -> str:
        return "json"

    def encode(self, message: Message) -> bytes:
        return self._encoder.encode(message)

    def decode(self, data: bytes | bytearray, message_class: type[M]) -> M:
        # Errors other than ConnectError become "unmarshal message: ..." invalid_argument
        # in connectrpc (decode_message), as they did with its own codec.
        try:
            text = bytes(data).decode("utf-8")
            document = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise ConnectError(
                Code.INVALID_ARGUMENT, f"unmarshal message: not valid JSON ({error})"
            ) from None
        if not isinstance(document, dict):
            raise ConnectError(
                Code.INVALID_ARGUMENT, "unmarshal message: a JSON object is expected"
            )
        check_enum_names(document, message_class.DESCRIPTOR)
        message: M = message_class()
        json_format.ParseDict(
            document, message, ignore_unknown_fields=True, max_recursion_depth=MAX_DEPTH
        )
        return message


def codecs() -> list[Codec[Any, Any]]:
    """The codecs to give every provd ASGI application."""
    return [google_protobuf_binary_codec(), StrictEnumJSONCodec()]


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Like google.protobuf's own parser: a key given twice is an error, not a choice."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key!r} appears twice")
        document[key] = value
    return document


def check_enum_names(
    document: Mapping[str, Any], descriptor: Descriptor, path: str = "", depth: int = 0
) -> None:
    """Raise `invalid_argument` for the first enum field in `document` (the JSON form
    of a `descriptor` message) whose value is a string that names no value of its enum.

    Only what the message declares is looked at: unknown keys are left for the parser
    to ignore, and values of the wrong type for it to refuse."""
    if depth > MAX_DEPTH:
        return  # the parser refuses messages this deep
    by_json_name = _json_names(descriptor)
    for key, value in document.items():
        field = by_json_name.get(key) or descriptor.fields_by_name.get(key)
        if field is None or value is None:
            continue
        where = f"{path}.{field.json_name}" if path else field.json_name
        if _is_map(field):
            if isinstance(value, dict):
                value_field = field.message_type.fields_by_name["value"]
                for map_key, item in value.items():
                    _check_value(value_field, item, f"{where}[{map_key!r}]", depth)
        elif field.is_repeated:
            if isinstance(value, list):
                for index, item in enumerate(value):
                    _check_value(field, item, f"{where}[{index}]", depth)
        else:
            _check_value(field, value, where, depth)


def _check_value(field: FieldDescriptor, value: Any, where: str, depth: int) -> None:
    if field.type == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, str) and value not in field.enum_type.values_by_name:
            try:
                int(value)  # the parser takes numbers written as strings
            except ValueError:
                names = ", ".join(v.name for v in field.enum_type.values)
                raise ConnectError(
                    Code.INVALID_ARGUMENT,
                    f"{where}: {value[:80]!r} is not a {field.enum_type.full_name}"
                    f" (one of {names})",
                ) from None
    elif (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and isinstance(value, dict)
        and not field.message_type.full_name.startswith(_WELL_KNOWN)
    ):
        check_enum_names(value, field.message_type, where, depth + 1)


@cache
def _json_names(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    return {field.json_name: field for field in descriptor.fields}


def _is_map(field: FieldDescriptor) -> bool:
    return bool(
        field.type == FieldDescriptor.TYPE_MESSAGE
        and field.is_repeated
        and field.message_type.GetOptions().map_entry
    )
