#!/usr/bin/env python3
"""Generates an operator-mode fixture (operator, system account, account, user creds) with PyPI `nkeys`.

The JWTs carry no expiry, so the fixture is generated once and committed:
    .venv/bin/python scripts/vectors/gen_operator_fixture.py > Tests/NATSIntegrationTests/Fixtures/operator.json
"""
import base64
import hashlib
import json
import os
import time

import nkeys


def keypair(prefix):
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    kp = nkeys.from_seed(bytearray(seed))
    return kp, seed.decode(), kp.public_key.decode()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt(claims: dict, signer) -> str:
    claims = dict(claims, iat=int(time.time()), jti="")
    digest = hashlib.new("sha512_256", json.dumps(claims, separators=(",", ":")).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = signer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{b64(signature)}"


op_kp, _, op_pub = keypair(nkeys.PREFIX_BYTE_OPERATOR)
sys_kp, _, sys_pub = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
acc_kp, acc_seed, acc_pub = keypair(nkeys.PREFIX_BYTE_ACCOUNT)
usr_kp, usr_seed, usr_pub = keypair(nkeys.PREFIX_BYTE_USER)

limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1,
          "leaf": -1}
operator_jwt = jwt({"iss": op_pub, "sub": op_pub, "name": "test-operator",
                    "nats": {"type": "operator", "version": 2, "system_account": sys_pub}}, op_kp)
sys_jwt = jwt({"iss": op_pub, "sub": sys_pub, "name": "SYS",
               "nats": {"type": "account", "version": 2, "limits": limits}}, op_kp)
acc_jwt = jwt({"iss": op_pub, "sub": acc_pub, "name": "APP",
               "nats": {"type": "account", "version": 2, "limits": limits}}, op_kp)
user_jwt = jwt({"iss": acc_pub, "sub": usr_pub, "name": "app-user",
                "nats": {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1,
                         "payload": -1}}, acc_kp)

print(json.dumps({
    "generator": "PyPI nkeys (scripts/vectors/gen_operator_fixture.py)",
    "operator_jwt": operator_jwt,
    "system_account": sys_pub, "system_account_jwt": sys_jwt,
    "account": acc_pub, "account_jwt": acc_jwt, "account_seed": acc_seed,
    "user_jwt": user_jwt, "user_seed": usr_seed,
}, indent=1))
