#!/usr/bin/env python3
"""Opens an xkv1 message with pynacl: xkey_open.py RECIPIENT_SEED SENDER_PUBLIC SEALED_B64 -> plaintext (base64)."""
import base64
import sys

import nacl.public

recipient_seed, sender_public, sealed = sys.argv[1], sys.argv[2], base64.b64decode(sys.argv[3])
# nkeys.decode_seed rejects curve prefixes, so decode the base32 seed by hand (2 prefix bytes, 32 raw, 2 crc).
padded = recipient_seed + "=" * (-len(recipient_seed) % 8)
raw_seed = base64.b32decode(padded)[2:34]
padded = sender_public + "=" * (-len(sender_public) % 8)
sender_key = base64.b32decode(padded)[1:33]
assert sealed[:4] == b"xkv1", "not xkv1"
box = nacl.public.Box(nacl.public.PrivateKey(raw_seed), nacl.public.PublicKey(sender_key))
print(base64.b64encode(box.decrypt(sealed[28:], sealed[4:28])).decode())
