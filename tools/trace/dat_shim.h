/* A C shim over libtracecmd: its headers (tracefs.h) are C that a C++
 * compiler refuses, so vtime-trace reaches it through these few calls. */
#ifndef VTIME_TRACE_DAT_SHIM_H
#define VTIME_TRACE_DAT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vt_dat;

/* Opens a trace-cmd file; NULL when libtracecmd cannot read it. */
struct vt_dat *vt_dat_open(const char *path);
void vt_dat_close(struct vt_dat *d);
/* The number of CPUs the file has streams for. */
int vt_dat_cpus(const struct vt_dat *d);

/* One CPU's reader: the current record's fields stay valid until the next
 * vt_dat_next on the same reader. */
struct vt_dat_cpu;
struct vt_dat_cpu *vt_dat_cpu_open(struct vt_dat *d, int cpu);
void vt_dat_cpu_close(struct vt_dat_cpu *c);

struct vt_dat_record {
  uint64_t ts_ns;
  int32_t pid;
  const char *name;
  const char *info;
  size_t info_len;
  uint64_t file_offset;
};
/* 1 and *out filled, or 0 at the CPU's end. */
int vt_dat_next(struct vt_dat_cpu *c, struct vt_dat_record *out);

#ifdef __cplusplus
}
#endif

#endif
