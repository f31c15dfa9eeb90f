# Where a path's instructions go: run under gdb against QEMU's gdb stub, with the machine
# under -icount so that the figures match the benchmark table.
#
#   ISO=target/xenia/scenarios/bench-pv/xenia.iso      # made by `cargo xtask bench --only kernel`
#   qemu-system-x86_64 -accel tcg -cpu max -m 1024 -nographic -cdrom $ISO \
#       -icount shift=0,sleep=off -gdb tcp::1234 -S &
#   BRK=$(nm target/xenia/xenia.elf | grep 11xen_version | cut -d' ' -f1) IGN=3000 \
#       gdb -q -batch -x tests/guests/bench/tools/trace.py target/xenia/xenia.elf
#   python3 tests/guests/bench/tools/histogram.py target/xenia/xenia.elf /tmp/pcs.txt
#
# BRK: the address to stop at (a hardware breakpoint); IGN: hits to let pass first (to be in
# the benchmark's loop rather than at boot). From there it steps until the guest runs again
# (a PC below the hypervisor's range), then through the guest to the next hypervisor entry,
# and records every PC of that whole hypervisor visit in /tmp/pcs.txt (HERE=1: the rest of
# the visit that hit the breakpoint instead; MAX=N: at most N instructions).
import os

import gdb

HV_LOW, HV_HIGH = 0xFFFF800000000000, 0xFFFFFFFF80000000


def pc():
    return int(gdb.parse_and_eval("$pc")) & 0xFFFFFFFFFFFFFFFF


def in_hv(p):
    return HV_LOW <= p < HV_HIGH


gdb.execute("set pagination off")
gdb.execute("target remote :%s" % os.environ.get("PORT", "1234"))
# COND: a gdb condition for the breakpoint, e.g. '*(long*)($rdi+112) == 17' at
# guest_trap_dispatch (the TrapFrame's rax: a xen_version hypercall).
cond = os.environ.get("COND")
if cond:
    gdb.execute("set language c")
gdb.execute("hbreak *0x%s%s" % (os.environ["BRK"], " if " + cond if cond else ""))
gdb.execute("ignore 1 %s" % os.environ.get("IGN", "3000"))
gdb.execute("continue")
gdb.execute("delete")
steps = 0
# HERE=1: record the rest of the visit that hit the breakpoint instead of the next one.
if not os.environ.get("HERE"):
    while in_hv(pc()) and steps < 1_000_000:
        gdb.execute("stepi", to_string=True)
        steps += 1
    while not in_hv(pc()) and steps < 2_000_000:
        gdb.execute("stepi", to_string=True)
        steps += 1
with open("/tmp/pcs.txt", "w") as out:
    n = 0
    while in_hv(pc()) and n < int(os.environ.get("MAX", "200000")):
        out.write("%x\n" % pc())
        gdb.execute("stepi", to_string=True)
        n += 1
print("hypervisor instructions in the visit:", n)
gdb.execute("kill")
