#!/usr/bin/env python3
"""Generates NKeys test vectors with the PyPI `nkeys` package (and pynacl for curve keys).

Run once; the output is committed as Tests/NKeysTests/Vectors/nkeys.json so tests need no Python:
    .venv/bin/python scripts/vectors/gen_nkeys_vectors.py > Tests/NKeysTests/Vectors/nkeys.json
"""
import base64
import json
import os

import nacl.public
import nkeys

PREFIXES = {
    "user": nkeys.PREFIX_BYTE_USER,
    "account": nkeys.PREFIX_BYTE_ACCOUNT,
    "operator": nkeys.PREFIX_BYTE_OPERATOR,
    "server": nkeys.PREFIX_BYTE_SERVER,
    "cluster": nkeys.PREFIX_BYTE_CLUSTER,
}
PREFIX_BYTE_CURVE = 23 << 3


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def with_crc(raw: bytes) -> bytes:
    return raw + nkeys.crc16_checksum(raw)


vectors = []
for kind, prefix in PREFIXES.items():
    for i in range(3):
        raw = os.urandom(32)
        seed = nkeys.encode_seed(raw, prefix)
        kp = nkeys.from_seed(bytearray(seed))
        message = f"nonce-{kind}-{i}".encode()
        vectors.append({
            "kind": kind,
            "raw_seed_hex": raw.hex(),
            "seed": seed.decode(),
            "public_key": kp.public_key.decode(),
            "private_key": kp.private_key.decode(),
            "message": message.decode(),
            "signature_b64url": base64.urlsafe_b64encode(kp.sign(message)).decode().rstrip("="),
        })

for i in range(3):
    raw = os.urandom(32)
    b1 = nkeys.PREFIX_BYTE_SEED | (PREFIX_BYTE_CURVE >> 5)
    b2 = (PREFIX_BYTE_CURVE & 31) << 3
    seed = b32(with_crc(bytes([b1, b2]) + raw))
    public = nacl.public.PrivateKey(raw).public_key.encode()
    vectors.append({
        "kind": "curve",
        "raw_seed_hex": raw.hex(),
        "seed": seed,
        "public_key": b32(with_crc(bytes([PREFIX_BYTE_CURVE]) + public)),
    })

print(json.dumps({"generator": "PyPI nkeys + pynacl", "vectors": vectors}, indent=1))
