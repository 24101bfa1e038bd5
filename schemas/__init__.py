"""The contract every mailgate stage shares: Avro schemas (*.avsc), the event codec,
mail ids, and topic names. Stages talk to each other only through these."""

from schemas.codec import Codec, DecodeError, Event, UnknownSchemaError, default_codec
from schemas.ids import new_mail_id
from schemas.message import pack_message, packed, unpack_message

__all__ = [
    "Codec",
    "DecodeError",
    "Event",
    "UnknownSchemaError",
    "default_codec",
    "new_mail_id",
    "pack_message",
    "packed",
    "unpack_message",
]
