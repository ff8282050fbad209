"""Runs a command and prints its wall time (s) and the peak RSS (KiB) of its process tree.

Usage: measure.py COMMAND [ARG]...   ->   "<seconds> <max_rss_kib>" on stdout.
The command's own output goes to /dev/null; a failure exits non-zero with its stderr.
"""
import resource
import subprocess
import sys
import time

start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
elapsed = time.perf_counter() - start
if done.returncode != 0:
    sys.stderr.write(done.stderr.decode(errors="replace"))
    sys.exit(done.returncode)
# ru_maxrss of waited-for children: the largest single process, in KiB on Linux.
print(f"{elapsed:.3f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")
