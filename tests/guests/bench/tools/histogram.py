# Instructions per function of a list of PCs (one hexadecimal address per line), using the
# ELF's symbols: `python3 histogram.py ELF PCS`.
import bisect
import collections
import subprocess
import sys

elf, pcs_file = sys.argv[1], sys.argv[2]
syms = []
for line in subprocess.run(["nm", "-C", elf], capture_output=True, text=True).stdout.splitlines():
    parts = line.split(" ", 2)
    if len(parts) == 3:
        try:
            syms.append((int(parts[0], 16), parts[2]))
        except ValueError:
            pass
syms.sort()
addrs = [a for a, _ in syms]
counts = collections.Counter()
for line in open(pcs_file):
    i = bisect.bisect_right(addrs, int(line, 16)) - 1
    counts[syms[i][1][:100] if i >= 0 else "?"] += 1
for name, n in counts.most_common(40):
    print(n, name)
print(sum(counts.values()), "in all")
