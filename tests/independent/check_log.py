#!/usr/bin/env python3
"""Independent check of a signet log, written apart from signet's Rust code.

Verifies the latest checkpoint's C2SP signed-note signature (type 0x02: ECDSA P-256, SHA-256,
DER signature; key ID = first 4 bytes of SHA-256 over the key's DER SubjectPublicKeyInfo)
against the server's JWKS, then one entry's RFC 9162 inclusion proof against that checkpoint.

Usage: check_log.py SERVER_URL INDEX      (prints "OK ..." and exits 0, or exits 1)
"""
import base64
import hashlib
import json
import sys
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_keys(jwks):
    for jwk in jwks["keys"]:
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            continue
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(b64url(jwk["x"]), "big"), int.from_bytes(b64url(jwk["y"]), "big"), ec.SECP256R1()
        )
        key = numbers.public_key()
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        yield hashlib.sha256(spki).digest()[:4], key


def verify_note(note, jwks):
    text, _, signature_block = note.rpartition("\n\n")
    text += "\n"
    origin, size, root = text.split("\n")[:3]
    keys = list(jwk_keys(jwks))
    verified = False
    for line in signature_block.strip("\n").split("\n"):
        assert line.startswith("\u2014 "), "signature line"
        name, blob = line[2:].split(" ", 1)
        blob = base64.b64decode(blob)
        if name != origin:
            continue
        for key_id, key in keys:
            if key_id == blob[:4]:
                key.verify(blob[4:], text.encode(), ec.ECDSA(hashes.SHA256()))
                verified = True
    if not verified:
        raise SystemExit("no checkpoint signature by a JWKS key")
    return origin, int(size), base64.b64decode(root)


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf_hash, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def main():
    server, index = sys.argv[1].rstrip("/"), int(sys.argv[2])
    jwks = json.loads(get(server + "/.well-known/jwks.json"))
    note = get(server + "/v1/log/checkpoint").decode()
    try:
        origin, size, root = verify_note(note, jwks)
    except InvalidSignature:
        raise SystemExit("checkpoint signature does not verify")
    entry = json.loads(get(f"{server}/v1/log/entries/{index}"))
    leaf = base64.b64decode(entry["leaf_input"])
    leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
    proof = json.loads(get(f"{server}/v1/log/proof/inclusion?index={index}&tree_size={size}"))
    hashes_ = [base64.b64decode(h) for h in proof["hashes"]]
    if not verify_inclusion(index, size, leaf_hash, hashes_, root):
        raise SystemExit(f"entry {index} is not included in the checkpoint of size {size}")
    event = json.loads(leaf)
    print(f"OK {origin} size={size} entry={index} kind={event['kind']}")


if __name__ == "__main__":
    main()
