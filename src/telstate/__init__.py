"""telstate: the telescope state of the MeerKAT Science Data Processor.

A key-value store of attributes (immutable keys), sensors (timestamped
samples) and indexed keys, in memory or in Redis, wire-compatible with
katsdptelstate 1.0.
"""

from ._arrays import SampleArrays
from ._codec import (
    ALLOWED_ENCODINGS,
    ENCODING_DEFAULT,
    ENCODING_MSGPACK,
    ENCODING_PICKLE,
    PICKLE_PROTOCOL,
    decode_value,
    encode_value,
    equal_encoded_values,
    set_allow_pickle,
)
from ._errors import (
    CancelledError,
    ConnectionError,
    DecodeError,
    EncodeError,
    ImmutableKeyError,
    InvalidKeyError,
    InvalidTimestampError,
    RdbParseError,
    TelstateError,
    TimeoutError,
    UnconfirmedWriteError,
)
from ._keys import KeyType
from ._version import __version__
from .backends import Backend, MemoryBackend
from .client import TelescopeState

__all__ = [
    "ALLOWED_ENCODINGS",
    "ENCODING_DEFAULT",
    "ENCODING_MSGPACK",
    "ENCODING_PICKLE",
    "PICKLE_PROTOCOL",
    "Backend",
    "CancelledError",
    "ConnectionError",
    "DecodeError",
    "EncodeError",
    "ImmutableKeyError",
    "InvalidKeyError",
    "InvalidTimestampError",
    "KeyType",
    "MemoryBackend",
    "RdbParseError",
    "SampleArrays",
    "TelescopeState",
    "TelstateError",
    "TimeoutError",
    "UnconfirmedWriteError",
    "__version__",
    "decode_value",
    "encode_value",
    "equal_encoded_values",
    "set_allow_pickle",
]
