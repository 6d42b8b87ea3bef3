"""What a delta of real upgrades would weigh with finer reuse than whole files.

`cargo xtask delta-study` runs this with a venv that has `fastcdc` (PyPI). For each upgrade
(a real package, two real releases, installed by pip into two trees) it prints:

- full: the new tree, each file deflated at level 5 (what a full bundle carries of it);
- delta: the files whose content the old tree lacks, deflated (what airgap's delta carries);
- cdc: the same files cut by FastCDC (4/16/64 KiB), only the chunks the old tree lacks,
  deflated (what content-defined chunking against the base would carry);
- zstd: the changed files compressed by `zstd -19` alone;
- patch: the same with `zstd -19 --patch-from=OLD` for a file the old tree has at that path
  (zstd's reference-prefix mode), `zstd -19` for a new one.

Sizes in KiB. Nothing here is used by airgap; it decides whether airgap should chunk.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zlib

import fastcdc

UPGRADES = [
    ("numpy", "1.26.3", "1.26.4"),
    ("pandas", "2.2.0", "2.2.1"),
    ("scipy", "1.12.0", "1.13.0"),
    ("lxml", "5.1.0", "5.2.1"),
    ("cryptography", "42.0.4", "42.0.5"),
    ("pillow", "10.2.0", "10.3.0"),
    ("pyarrow", "15.0.0", "15.0.1"),
]


def install(python, spec, target):
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-compile", "--target", target, spec],
        check=True,
    )


def files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            out[os.path.relpath(p, root)] = p
    return out


def deflated(data):
    return len(zlib.compress(data, 5))


def chunks(data):
    for c in fastcdc.fastcdc(data, min_size=4096, avg_size=16384, max_size=65536, fat=True):
        yield c.data


def zstd(path, reference=None):
    cmd = ["zstd", "-q", "-19", "-c", path]
    if reference:
        cmd[3:3] = ["--long=27", f"--patch-from={reference}"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return len(out.stdout)


def study(python, name, old_v, new_v, work):
    old, new = os.path.join(work, "old"), os.path.join(work, "new")
    install(python, f"{name}=={old_v}", old)
    install(python, f"{name}=={new_v}", new)
    old_files, new_files = files(old), files(new)
    old_hashes = set()
    old_chunks = set()
    for p in old_files.values():
        data = open(p, "rb").read()
        old_hashes.add(hashlib.sha256(data).digest())
        for c in chunks(data):
            old_chunks.add(hashlib.sha256(c).digest())
    full = delta = cdc = plain = patch = 0
    for rel, p in sorted(new_files.items()):
        data = open(p, "rb").read()
        full += deflated(data)
        if hashlib.sha256(data).digest() in old_hashes:
            continue
        delta += deflated(data)
        fresh = b"".join(c for c in chunks(data) if hashlib.sha256(c).digest() not in old_chunks)
        cdc += deflated(fresh) if fresh else 0
        plain += zstd(p)
        patch += zstd(p, old_files.get(rel))
    return full, delta, cdc, plain, patch


def main():
    python = sys.argv[1] if len(sys.argv) > 1 else sys.executable
    print("| upgrade | full | delta (files) | cdc | zstd -19 | zstd --patch-from |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = [0] * 5
    for name, old_v, new_v in UPGRADES:
        with tempfile.TemporaryDirectory(prefix="airgap-delta-study-") as work:
            row = study(python, name, old_v, new_v, work)
        totals = [t + r for t, r in zip(totals, row)]
        kib = " | ".join(f"{r // 1024:,}" for r in row)
        print(f"| {name} {old_v} -> {new_v} | {kib} |", flush=True)
    kib = " | ".join(f"{t // 1024:,}" for t in totals)
    print(f"| all | {kib} |")


if __name__ == "__main__":
    main()
