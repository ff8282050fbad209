#!/usr/bin/env python3
"""Independent C2SP tlog-tiles client, written from the spec apart from signet's Rust code.

Fetches PREFIX/checkpoint and checks its Ed25519 signed-note signature under VKEY (check_log.py's
note code); fetches every entry bundle and every hash tile the checkpoint's tree has (full and
partial); checks that each entry hashes to its level-0 tile hash, that each hash at level L+1 is
the Merkle Tree Hash of the full tile below it, and that the tree hash computed from the tiles
and the one computed from the entries alone both equal the checkpoint's root.

Usage: check_tiles.py PREFIX VKEY   (prints "OK ..." and exits 0, or exits 1)
PREFIX is the log's tlog-tiles prefix, e.g. http://127.0.0.1:8420/log
"""
import hashlib
import os
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_log import node, verify_note  # noqa: E402

WIDTH = 256


def leaf(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def mth(hashes):
    """RFC 6962 Merkle Tree Hash over already-hashed leaves."""
    if len(hashes) == 1:
        return hashes[0]
    split = 1
    while split * 2 < len(hashes):
        split *= 2
    return node(mth(hashes[:split]), mth(hashes[split:]))


def index_path(n):
    groups = []
    while True:
        groups.append(n % 1000)
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(("x%03d" if i < len(groups) - 1 else "%03d") % g for i, g in enumerate(groups))


def tile_path(kind, n, width):
    path = f"tile/{kind}/{index_path(n)}"
    return path + (f".p/{width}" if width < WIDTH else "")


def fetch(prefix, path, content_type="application/octet-stream"):
    with urllib.request.urlopen(f"{prefix}/{path}", timeout=10) as response:
        got = response.headers.get("Content-Type", "")
        if got != content_type:
            raise SystemExit(f"{path}: Content-Type {got!r}, not {content_type!r}")
        if path.startswith("tile/") and "immutable" not in response.headers.get("Cache-Control", ""):
            raise SystemExit(f"{path}: tiles must be cached as immutable")
        return response.read()


def tiles_of(size, level):
    """(index, width) of each tile at `level` in a tree of `size` entries."""
    count = size >> (8 * level)
    out = [(n, WIDTH) for n in range(count // WIDTH)]
    if count % WIDTH:
        out.append((count // WIDTH, count % WIDTH))
    return out


def main():
    prefix, vkey = sys.argv[1].rstrip("/"), sys.argv[2]
    note = fetch(prefix, "checkpoint", "text/plain; charset=utf-8").decode()
    origin, size, root = verify_note(note, vkey)
    if size == 0:
        raise SystemExit("the checkpoint is empty")

    entries = []
    for n, width in tiles_of(size, 0):
        bundle = fetch(prefix, tile_path("entries", n, width))
        got = []
        while bundle:
            length = int.from_bytes(bundle[:2], "big")
            if len(bundle) < 2 + length:
                raise SystemExit(f"entry bundle {n} is cut short")
            got.append(bundle[2 : 2 + length])
            bundle = bundle[2 + length :]
        if len(got) != width:
            raise SystemExit(f"entry bundle {n} has {len(got)} entries, not {width}")
        entries.extend(got)

    levels = {}
    level = 0
    while size >> (8 * level):
        hashes = []
        for n, width in tiles_of(size, level):
            tile = fetch(prefix, tile_path(level, n, width))
            if len(tile) != 32 * width:
                raise SystemExit(f"tile {level}/{n} is {len(tile)} bytes, not {32 * width}")
            hashes.extend(tile[i : i + 32] for i in range(0, len(tile), 32))
        levels[level] = hashes
        level += 1
    leaves = [leaf(e) for e in entries]
    if levels[0] != leaves:
        raise SystemExit("a level-0 tile hash is not the hash of its entry")
    for level in range(1, len(levels)):
        below = levels[level - 1]
        for i, hash_ in enumerate(levels[level]):
            if mth(below[i * WIDTH : (i + 1) * WIDTH]) != hash_:
                raise SystemExit(f"tile hash {level}/{i} is not the hash of the tile below it")

    # The tree hash from the tiles: the complete subtrees of the size's binary decomposition,
    # each read from the highest tile level that covers it.
    start, parts = 0, []
    remaining = size
    while remaining:
        height = remaining.bit_length() - 1
        tile_level = height // 8
        span = 1 << (height - 8 * tile_level)
        first = start >> (8 * tile_level)
        parts.append(mth(levels[tile_level][first : first + span]))
        start += 1 << height
        remaining -= 1 << height
    from_tiles = parts[-1]
    for part in reversed(parts[:-1]):
        from_tiles = node(part, from_tiles)
    if from_tiles != root:
        raise SystemExit("the tree hash from the tiles is not the checkpoint's root")
    if mth(leaves) != root:
        raise SystemExit("the tree hash of the entries is not the checkpoint's root")

    # A tile the tree does not have yet is not served.
    try:
        fetch(prefix, tile_path(0, size // WIDTH + 1, WIDTH))
        raise SystemExit("a tile beyond the checkpoint was served")
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise SystemExit(f"a tile beyond the checkpoint: HTTP {error.code}, not 404")
    print(f"OK {origin} size={size} levels={len(levels)} entries={len(entries)}")


if __name__ == "__main__":
    main()
