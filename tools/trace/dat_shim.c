#include "dat_shim.h"

#include <stdlib.h>
#include <trace-cmd.h>

struct vt_dat {
  struct tracecmd_input *handle;
  struct tep_handle *tep;
};

struct vt_dat_cpu {
  struct vt_dat *dat;
  int cpu;
  struct tep_record *record;
  struct trace_seq seq;
};

struct vt_dat *vt_dat_open(const char *path) {
  tracecmd_set_loglevel(TEP_LOG_NONE);
  // No plugins: the build host's (an x86 machine's kvm plugin) would print
  // an arm64 trace's kvm_entry and kvm_exit with x86 fields it cannot find;
  // each event's own format, from the file, prints it as its kernel did.
  struct tracecmd_input *h = tracecmd_open(path, TRACECMD_FL_LOAD_NO_PLUGINS);
  if (h == NULL) return NULL;
  struct vt_dat *d = calloc(1, sizeof *d);
  if (d == NULL) {
    tracecmd_close(h);
    return NULL;
  }
  d->handle = h;
  d->tep = tracecmd_get_tep(h);
  return d;
}

void vt_dat_close(struct vt_dat *d) {
  if (d == NULL) return;
  tracecmd_close(d->handle);
  free(d);
}

int vt_dat_cpus(const struct vt_dat *d) { return tep_get_cpus(d->tep); }

struct vt_dat_cpu *vt_dat_cpu_open(struct vt_dat *d, int cpu) {
  struct vt_dat_cpu *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->dat = d;
  c->cpu = cpu;
  trace_seq_init(&c->seq);
  return c;
}

void vt_dat_cpu_close(struct vt_dat_cpu *c) {
  if (c == NULL) return;
  if (c->record != NULL) tracecmd_free_record(c->record);
  trace_seq_destroy(&c->seq);
  free(c);
}

int vt_dat_next(struct vt_dat_cpu *c, struct vt_dat_record *out) {
  if (c->record != NULL) tracecmd_free_record(c->record);
  c->record = tracecmd_read_data(c->dat->handle, c->cpu);
  if (c->record == NULL) return 0;
  struct tep_handle *tep = c->dat->tep;
  struct tep_event *event = tep_find_event_by_record(tep, c->record);
  out->ts_ns = c->record->ts;
  out->pid = tep_data_pid(tep, c->record);
  out->name = event != NULL && event->name != NULL ? event->name : "unknown";
  trace_seq_reset(&c->seq);
  tep_print_event(tep, &c->seq, c->record, "%s", TEP_PRINT_INFO);
  trace_seq_terminate(&c->seq);
  out->info = c->seq.buffer;
  out->info_len = (size_t)c->seq.len;
  while (out->info_len > 0 && out->info[out->info_len - 1] == '\n') out->info_len--;
  out->file_offset = c->record->offset;
  return 1;
}
