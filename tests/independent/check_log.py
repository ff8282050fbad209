#!/usr/bin/env python3
"""Independent check of a signet log, written apart from signet's Rust code.

Verifies the latest checkpoint's C2SP signed-note signature (type 0x01: Ed25519 over the note
text; key name = origin; key ID = first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key),
computed here) under the log's vkey, then one entry's RFC 9162 inclusion proof against that
checkpoint.

Usage: check_log.py SERVER_URL INDEX [VKEY]   (prints "OK ..." and exits 0, or exits 1)
With no VKEY, the server's /v1/log/vkey is used.
"""
import base64
import hashlib
import json
import sys
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def parse_vkey(vkey):
    name, key_id_hex, encoded = vkey.strip().split("+", 2)
    key = base64.b64decode(encoded)
    if key[0] != 0x01 or len(key) != 33:
        raise SystemExit("the vkey is not an Ed25519 key")
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise SystemExit("the vkey's key ID does not match its name and key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(key[1:])


def verify_note(note, vkey):
    name, key_id, key = parse_vkey(vkey)
    text, _, signature_block = note.rpartition("\n\n")
    text += "\n"
    origin, size, root = text.split("\n")[:3]
    if origin != name:
        raise SystemExit(f"checkpoint origin {origin!r} is not the vkey's name {name!r}")
    verified = False
    for line in signature_block.strip("\n").split("\n"):
        assert line.startswith("\u2014 "), "signature line"
        line_name, blob = line[2:].split(" ", 1)
        blob = base64.b64decode(blob)
        if line_name == name and blob[:4] == key_id:
            key.verify(blob[4:], text.encode())
            verified = True
    if not verified:
        raise SystemExit("no checkpoint signature by the log key")
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
    vkey = sys.argv[3] if len(sys.argv) > 3 else get(server + "/v1/log/vkey").decode()
    note = get(server + "/v1/log/checkpoint").decode()
    try:
        origin, size, root = verify_note(note, vkey)
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
