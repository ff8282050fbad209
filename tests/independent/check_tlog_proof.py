#!/usr/bin/env python3
"""Independent check of a C2SP tlog-proof (c2sp.org/tlog-proof@v1), written from the spec apart
from signet's Rust code: the checkpoint's Ed25519 note signature under VKEY, then the inclusion
of the entry carried in the `extra` line at `index` (RFC 6962 hashing).

Usage: check_tlog_proof.py PROOF_FILE VKEY   (prints "OK ..." and exits 0, or exits 1)
"""
import base64
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_log import verify_inclusion, verify_note  # noqa: E402


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    vkey = sys.argv[2]
    head, checkpoint = text.split("\n\n", 1)
    lines = head.split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1":
        raise SystemExit("not a tlog-proof")
    lines = lines[1:]
    extra = None
    if lines and lines[0].startswith("extra "):
        extra = base64.b64decode(lines[0][len("extra "):], validate=True)
        lines = lines[1:]
    if not lines or not lines[0].startswith("index "):
        raise SystemExit("no index line")
    index = int(lines[0][len("index "):])
    proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    if extra is None:
        raise SystemExit("no entry in the extra line")
    origin, size, root = verify_note(checkpoint, vkey)
    leaf_hash = hashlib.sha256(b"\x00" + extra).digest()
    if not verify_inclusion(index, size, leaf_hash, proof, root):
        raise SystemExit(f"entry {index} is not included in the checkpoint of size {size}")
    event = json.loads(extra)
    print(f"OK {origin} size={size} index={index} kind={event['kind']}")


if __name__ == "__main__":
    main()
