// A QEMU TCG plugin (plugin API version 1, QEMU 7.2, whose headers Debian does not ship: the
// few declarations it needs are written out below): the sequence of translation blocks the
// guest executes between the first execution of address `start` (after `skip` earlier ones)
// and the next execution of address `stop`, written to `out` (default trace.bin) as records
// of (block address u64, instructions u32, padding u32). `incl.py` turns it into inclusive
// and exclusive instruction counts per function. Build and use: see README.md here.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct { const char *target_name; int min, cur; int system_emulation; int smp_vcpus; int max_vcpus; } qemu_info_t;
typedef void (*tb_trans_cb)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*udata_cb)(unsigned int, void *);
extern void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, tb_trans_cb);
extern size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
extern uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
extern void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *, udata_cb, int flags, void *);
__attribute__((visibility("default"))) int qemu_plugin_version = 1;
struct tbi { uint64_t vaddr; uint32_t n; };
struct rec { uint64_t vaddr; uint32_t n, pad; };
static uint64_t start, stop; static long skip; static int on, done;
static struct rec *buf; static size_t len, cap;
static const char *out = "trace.bin";
static void flush(void) {
    FILE *f = fopen(out, "wb");
    if (!f) { perror(out); return; }
    fwrite(buf, sizeof *buf, len, f); fclose(f);
}
static void exec(unsigned int vcpu, void *ud) {
    struct tbi *t = ud;
    if (done) return;
    if (!on && t->vaddr == start) { if (skip-- > 0) return; on = 1; }
    else if (on && t->vaddr == stop) { on = 0; done = 1; flush(); return; }
    if (!on) return;
    if (len == cap) { cap = cap ? cap * 2 : 1 << 20; buf = realloc(buf, cap * sizeof *buf); }
    buf[len].vaddr = t->vaddr; buf[len].n = t->n; len++;
}
static void trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    struct tbi *t = malloc(sizeof *t);
    t->vaddr = qemu_plugin_tb_vaddr(tb); t->n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_cb(tb, exec, 0, t);
}
__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "start=", 6)) start = strtoull(argv[i] + 6, 0, 16);
        if (!strncmp(argv[i], "stop=", 5)) stop = strtoull(argv[i] + 5, 0, 16);
        if (!strncmp(argv[i], "skip=", 5)) skip = strtol(argv[i] + 5, 0, 10);
        if (!strncmp(argv[i], "out=", 4)) out = argv[i] + 4;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, trans);
    return 0;
}
