#!/usr/bin/env python3
"""Generates xkv1 vectors with pynacl (NaCl box) and PyPI nkeys' CRC16, committed as data:
    .venv/bin/python scripts/vectors/gen_xkey_vectors.py > Tests/NKeysTests/Vectors/xkeys.json
Each vector was sealed by the peer; the tests open it, and seal with the same keys for the peer to open.
"""
import base64
import json
import os

import nacl.public
import nkeys

CURVE = 23 << 3


def b32(raw):
    return base64.b32encode(raw).decode().rstrip("=")


def enc(raw):
    return b32(raw + nkeys.crc16_checksum(raw))


def seed(raw):
    return enc(bytes([nkeys.PREFIX_BYTE_SEED | (CURVE >> 5), (CURVE & 31) << 3]) + raw)


vectors = []
for text in [b"", b"{\"NATS_URL\":\"nats://127.0.0.1:4222\"}", os.urandom(1000)]:
    s, r = os.urandom(32), os.urandom(32)
    sk, rk = nacl.public.PrivateKey(s), nacl.public.PrivateKey(r)
    nonce = os.urandom(24)
    box = nacl.public.Box(sk, rk.public_key).encrypt(text, nonce).ciphertext
    vectors.append({
        "sender_seed": seed(s), "sender_public": enc(bytes([CURVE]) + bytes(sk.public_key)),
        "recipient_seed": seed(r), "recipient_public": enc(bytes([CURVE]) + bytes(rk.public_key)),
        "plaintext_b64": base64.b64encode(text).decode(),
        "sealed_b64": base64.b64encode(b"xkv1" + nonce + box).decode(),
    })
print(json.dumps({"generator": "pynacl + PyPI nkeys CRC16", "vectors": vectors}, indent=1))
