"""A faster JSON transcoder, in eventsourcing's own stored format (orjson).

eventsourcing's ``JSONTranscoder`` encodes datetimes (and other registered types)
as ``{"_type_": name, "_data_": value}`` objects and decodes them with a Python
``object_hook`` for every JSON object. This transcoder writes and reads the same
bytes-compatible format with orjson, restoring the tagged objects in one walk,
so stores written by either can be read by the other. It is used when orjson is
installed (``pip install 'msgstate[fast]'``).
"""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

__all__ = ["OrjsonTranscoder"]

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME  # datetimes go to the tagged form


class OrjsonTranscoder(JSONTranscoder):
    """``JSONTranscoder``'s format, encoded and decoded by orjson.

    orjson writes UUIDs as plain strings (it never hands them to ``default``),
    so a UUID would come back as a str: msgstate's event and snapshot states hold
    none (a test round-trips every state through both transcoders).
    """

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=self._encode_obj, option=_OPTIONS)

    def decode(self, data: bytes) -> Any:
        return self._restore(orjson.loads(data))

    def _restore(self, value: Any) -> Any:
        """Decode tagged objects, innermost first (as the object_hook would)."""
        if type(value) is list:
            return [self._restore(item) for item in value]
        if type(value) is not dict:
            return value
        for key, item in value.items():
            if type(item) is dict or type(item) is list:
                value[key] = self._restore(item)
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            return self._decode_obj(value)
        return value
