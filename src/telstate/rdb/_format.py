"""Constants of the Redis RDB file format (no logic).

An RDB file is a magic string and version, then a stream of records, then an
EOF opcode and (from version 5 on) an 8-byte little-endian CRC-64 of all the
bytes before it (0 means "not computed")::

    "REDIS" 4-digit version | "VALKEY" 3-digit version  (Valkey 9 and later)
    opcode records (AUX, SELECTDB, RESIZEDB, expiry, FREQ/IDLE, ...)
    key records: [expiry] [freq/idle] type-byte key value
    0xFF EOF, CRC-64 (little-endian)

Type bytes below 0xF0 start a key; the rest are opcodes.  Type codes 22-25
mean different things to Redis (7.4+: hashes with field expiry) and to Valkey
(9+, magic "VALKEY": its own hash with field expiry), so the reader looks at
the magic before interpreting them.
"""

from __future__ import annotations

from typing import Final

# Opcodes
OP_UPDATE_VALKEY: Final = 242  # Valkey 9: inline replication command (not in files)
OP_SLOT_IMPORT_VALKEY: Final = 243  # Valkey 9: slot import state
OP_SLOT_INFO: Final = 244
OP_FUNCTION2: Final = 245
OP_FUNCTION_PRE_GA: Final = 246
OP_MODULE_AUX: Final = 247
OP_IDLE: Final = 248
OP_FREQ: Final = 249
OP_AUX: Final = 250
OP_RESIZEDB: Final = 251
OP_EXPIRETIME_MS: Final = 252
OP_EXPIRETIME: Final = 253
OP_SELECTDB: Final = 254
OP_EOF: Final = 255

# Value types
TYPE_STRING: Final = 0
TYPE_LIST: Final = 1
TYPE_SET: Final = 2
TYPE_ZSET: Final = 3  # scores as strings
TYPE_HASH: Final = 4
TYPE_ZSET_2: Final = 5  # scores as binary doubles
TYPE_MODULE_PRE_GA: Final = 6
TYPE_MODULE_2: Final = 7
TYPE_HASH_ZIPMAP: Final = 9
TYPE_LIST_ZIPLIST: Final = 10
TYPE_SET_INTSET: Final = 11
TYPE_ZSET_ZIPLIST: Final = 12
TYPE_HASH_ZIPLIST: Final = 13
TYPE_LIST_QUICKLIST: Final = 14
TYPE_STREAM_LISTPACKS: Final = 15
TYPE_HASH_LISTPACK: Final = 16
TYPE_ZSET_LISTPACK: Final = 17
TYPE_LIST_QUICKLIST_2: Final = 18
TYPE_STREAM_LISTPACKS_2: Final = 19
TYPE_SET_LISTPACK: Final = 20
TYPE_STREAM_LISTPACKS_3: Final = 21
# Redis 7.4+ (magic "REDIS"): hashes whose fields may expire
TYPE_HASH_METADATA_PRE_GA: Final = 22
TYPE_HASH_LISTPACK_EX_PRE_GA: Final = 23
TYPE_HASH_METADATA: Final = 24
TYPE_HASH_LISTPACK_EX: Final = 25
# Valkey 9+ (magic "VALKEY")
TYPE_VALKEY_HASH_2: Final = 22

# Special string encodings (after a length byte 0b11xxxxxx)
ENC_INT8: Final = 0
ENC_INT16: Final = 1
ENC_INT32: Final = 2
ENC_LZF: Final = 3

# Module value opcodes
MODULE_EOF: Final = 0
MODULE_SINT: Final = 1
MODULE_UINT: Final = 2
MODULE_FLOAT: Final = 3
MODULE_DOUBLE: Final = 4
MODULE_STRING: Final = 5

#: Highest RDB version whose format this package knows, for each magic.
MAX_REDIS_VERSION: Final = 13
MAX_VALKEY_VERSION: Final = 81

#: Names of the types telstate does not use (skipped and counted when reading).
OTHER_TYPE_NAMES: Final = {
    TYPE_LIST: "list",
    TYPE_SET: "set",
    TYPE_MODULE_2: "module",
    TYPE_LIST_ZIPLIST: "list",
    TYPE_SET_INTSET: "set",
    TYPE_LIST_QUICKLIST: "list",
    TYPE_STREAM_LISTPACKS: "stream",
    TYPE_LIST_QUICKLIST_2: "list",
    TYPE_STREAM_LISTPACKS_2: "stream",
    TYPE_SET_LISTPACK: "set",
    TYPE_STREAM_LISTPACKS_3: "stream",
}
