/*
 * vtime-example-vmm: the time path of a minimal KVM VMM on arm64, written
 * against the installed vtime C API alone (<vtime/vtime.h>, -lvtime).
 *
 * It runs a bare-metal guest (a flat binary loaded at 0x40080000, as
 * vtime's guests/ programs are), pauses it after a while, saves it to a
 * file, and later restores it from that file into a new VM with a migration
 * policy. What vtime does in that path is marked "vtime:" below; the rest is
 * what any VMM already does (memory, registers, a run loop, a UART).
 *
 *   vtime-example-vmm run GUEST.bin [--snapshot FILE --after MS]
 *   vtime-example-vmm restore FILE [--policy freeze|wallclock]
 *   vtime-example-vmm show FILE
 *
 * The machine: one vCPU, RAM at 0x40000000, a PL011 data register at
 * 0x09000000 (writes are printed, reads of any device give 0) and vtime's
 * test finisher at 0x090c0000 (a write of V ends the VM with status V).
 * No interrupt controller: the guest must not need interrupts.
 *
 * The snapshot file is this example's own: "VTEXSNP1", then the guest time
 * as vtime encodes it, the vCPU's other registers, and the RAM (all
 * little-endian, with lengths).
 *
 * The VMM part needs arm64's <linux/kvm.h>. Built for another architecture
 * only "show" works; "run" and "restore" ask the library for the host's
 * counter, which it cannot read there, and exit 3 with its message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>

#include <vtime/vtime.h>

#if defined(__aarch64__)
#include <linux/kvm.h>
#endif

#define RAM_BASE 0x40000000ull
#define RAM_SIZE (16ull << 20)
#define IMAGE_OFFSET 0x80000ull
#define UART_DR 0x09000000ull
#define FINISHER 0x090c0000ull
#define MAX_REGS 1024
#define EXIT_USAGE 2
#define EXIT_NO_KVM 3
#define EXIT_FAILED 4

static const char kMagic[8] = {'V', 'T', 'E', 'X', 'S', 'N', 'P', '1'};

static void die(const char *what) {
  fprintf(stderr, "vtime-example-vmm: %s: %s\n", what, strerror(errno));
  exit(EXIT_FAILED);
}

/* A vtime call that failed: its status and the library's message. */
static void vtime_die(vtime_status status) {
  fprintf(stderr, "vtime-example-vmm: %s (%s)\n", vtime_last_error(), vtime_status_name(status));
  exit(status == VTIME_ERR_UNSUPPORTED ? EXIT_NO_KVM : EXIT_FAILED);
}
#define VT(call)                              \
  do {                                        \
    vtime_status vt_status_ = (call);         \
    if (vt_status_ != VTIME_OK) vtime_die(vt_status_); \
  } while (0)

static uint64_t get_u64(FILE *f) {
  uint8_t b[8];
  if (fread(b, 1, 8, f) != 8) {
    fprintf(stderr, "vtime-example-vmm: the snapshot is truncated\n");
    exit(EXIT_FAILED);
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= (uint64_t)b[i] << (8 * i);
  return v;
}

/* Reads a snapshot file: the guest time into a new state, the registers
 * into *regs (pairs of id, value), the RAM into ram (if not NULL). */
static vtime_state *read_snapshot(const char *path, uint64_t **regs, uint64_t *nregs,
                                  uint8_t *ram) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) die(path);
  char magic[8];
  if (fread(magic, 1, 8, f) != 8 || memcmp(magic, kMagic, 8) != 0) {
    fprintf(stderr, "vtime-example-vmm: %s is not a snapshot of this program\n", path);
    exit(EXIT_FAILED);
  }
  uint64_t size = get_u64(f);
  if (size > (1u << 20)) {
    fprintf(stderr, "vtime-example-vmm: %s: guest time of %" PRIu64 " bytes\n", path, size);
    exit(EXIT_FAILED);
  }
  uint8_t *time = malloc(size ? size : 1);
  if (time == NULL) die("malloc");
  if (fread(time, 1, size, f) != size) {
    fprintf(stderr, "vtime-example-vmm: the snapshot is truncated\n");
    exit(EXIT_FAILED);
  }
  vtime_state *state = NULL;
  /* vtime: refuses anything that is not exactly one valid encoding. */
  VT(vtime_state_decode(time, size, &state));
  free(time);
  *nregs = get_u64(f);
  if (*nregs > MAX_REGS) {
    fprintf(stderr, "vtime-example-vmm: %s: %" PRIu64 " registers\n", path, *nregs);
    exit(EXIT_FAILED);
  }
  *regs = malloc((*nregs ? *nregs : 1) * 2 * sizeof(uint64_t));
  if (*regs == NULL) die("malloc");
  for (uint64_t i = 0; i < 2 * *nregs; ++i) (*regs)[i] = get_u64(f);
  if (get_u64(f) != RAM_SIZE) {
    fprintf(stderr, "vtime-example-vmm: %s: not %llu MiB of RAM\n", path, RAM_SIZE >> 20);
    exit(EXIT_FAILED);
  }
  if (ram != NULL && fread(ram, 1, RAM_SIZE, f) != RAM_SIZE) {
    fprintf(stderr, "vtime-example-vmm: the snapshot is truncated\n");
    exit(EXIT_FAILED);
  }
  fclose(f);
  return state;
}

static int cmd_show(const char *path) {
  uint64_t *regs = NULL, nregs = 0;
  vtime_state *state = read_snapshot(path, &regs, &nregs, NULL);
  free(regs);
  size_t size = 0;
  vtime_status s = vtime_state_to_json(state, NULL, &size);
  if (s != VTIME_ERR_BUFFER_TOO_SMALL) vtime_die(s);
  char *json = malloc(size);
  if (json == NULL) die("malloc");
  VT(vtime_state_to_json(state, json, &size));
  printf("%s\n%" PRIu64 " other registers\n", json, nregs);
  free(json);
  vtime_state_destroy(state);
  return 0;
}

#if defined(__aarch64__)

static void put_u64(FILE *f, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = (uint8_t)(v >> (8 * i));
  if (fwrite(b, 1, 8, f) != 8) die("write");
}

/* The guest's virtual count at the pause a state describes. */
static uint64_t paused_count(const vtime_state *state) {
  vtime_state_vm vm;
  VT(vtime_state_get_vm(state, &vm));
  return vm.pause.host_counter - vm.virtual_offset;
}

struct vm {
  int kvm, vm, vcpu;
  struct kvm_run *run;
  size_t run_size;
  uint8_t *ram;
  vtime_clock *clock;
  uint32_t host_flags;
};

static uint64_t core_reg(unsigned n) { /* x0..x30, or 32 for the PC */
  return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (n * 2u);
}

static void set_reg(int fd, uint64_t id, uint64_t value) {
  struct kvm_one_reg r = {.id = id, .addr = (uint64_t)(uintptr_t)&value};
  if (ioctl(fd, KVM_SET_ONE_REG, &r) < 0) die("KVM_SET_ONE_REG");
}

static uint64_t get_reg(int fd, uint64_t id) {
  uint64_t value = 0;
  struct kvm_one_reg r = {.id = id, .addr = (uint64_t)(uintptr_t)&value};
  if (ioctl(fd, KVM_GET_ONE_REG, &r) < 0) die("KVM_GET_ONE_REG");
  return value;
}

/* A VM with RAM and one initialised vCPU, and vtime's clock for it. */
static void vm_create(struct vm *m) {
  m->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (m->kvm < 0) die("/dev/kvm");
  m->vm = ioctl(m->kvm, KVM_CREATE_VM, 0);
  if (m->vm < 0) die("KVM_CREATE_VM");

  /* vtime: what this KVM offers for guest time, and a clock model. */
  uint64_t cntfrq = 0;
  VT(vtime_kvm_probe(m->vm, &m->host_flags, &cntfrq));
  VT(vtime_clock_create(cntfrq, m->host_flags, &m->clock));
  printf("vmm: KVM %s the VM offset; counter at %" PRIu64 " Hz\n",
         (m->host_flags & VTIME_HOST_VM_OFFSET_API) ? "has" : "lacks", cntfrq);

  m->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m->ram == MAP_FAILED) die("mmap RAM");
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = RAM_BASE, .memory_size = RAM_SIZE,
      .userspace_addr = (uint64_t)(uintptr_t)m->ram};
  if (ioctl(m->vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

  m->vcpu = ioctl(m->vm, KVM_CREATE_VCPU, 0);
  if (m->vcpu < 0) die("KVM_CREATE_VCPU");
  int size = ioctl(m->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
  m->run_size = (size_t)size;
  m->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
  if (m->run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_vcpu_init init;
  if (ioctl(m->vm, KVM_ARM_PREFERRED_TARGET, &init) < 0) die("KVM_ARM_PREFERRED_TARGET");
  init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
  if (ioctl(m->vcpu, KVM_ARM_VCPU_INIT, &init) < 0) die("KVM_ARM_VCPU_INIT");
  uint64_t now = 0;
  VT(vtime_kvm_host_counter(&now));
  /* vtime: tell the model what KVM just did to the offsets. */
  VT(vtime_clock_on_vcpu_created(m->clock, now));
}

static volatile sig_atomic_t pause_requested;
static struct kvm_run *running;
static void on_alarm(int sig) {
  (void)sig;
  pause_requested = 1;
  if (running != NULL) running->immediate_exit = 1;
}

/* Runs the vCPU until the guest ends (returns its status) or a pause is
 * requested (returns -1). */
static int vm_run(struct vm *m) {
  running = m->run;
  for (;;) {
    if (pause_requested) return -1;
    if (ioctl(m->vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR) {
        m->run->immediate_exit = 0;
        continue;
      }
      die("KVM_RUN");
    }
    struct kvm_run *r = m->run;
    switch (r->exit_reason) {
      case KVM_EXIT_MMIO: {
        uint64_t value = 0;
        memcpy(&value, r->mmio.data, r->mmio.len <= 8 ? r->mmio.len : 8);
        if (!r->mmio.is_write) {
          memset(r->mmio.data, 0, sizeof r->mmio.data);  /* every device reads as 0 */
        } else if (r->mmio.phys_addr == UART_DR) {
          putchar((int)(value & 0xff));
          if ((value & 0xff) == '\n') fflush(stdout);
        } else if (r->mmio.phys_addr == FINISHER) {
          fflush(stdout);
          return (int)(value & 0xff);
        }
        break;
      }
      case KVM_EXIT_SYSTEM_EVENT:
        fflush(stdout);
        return 0;
      default:
        fprintf(stderr, "vtime-example-vmm: unexpected exit %u\n", r->exit_reason);
        exit(EXIT_FAILED);
    }
  }
}

/* The pause: guest time first (vtime), then what the VMM saves anyway. */
static void snapshot(struct vm *m, const char *path) {
  vtime_state *state = NULL;
  VT(vtime_state_create(&state));
  /* vtime: the offsets, the pause instant and the timers, from KVM. */
  VT(vtime_kvm_capture(m->clock, &m->vcpu, 1, state));
  size_t size = 0;
  vtime_status s = vtime_state_encode(state, NULL, &size);
  if (s != VTIME_ERR_BUFFER_TOO_SMALL) vtime_die(s);
  uint8_t *time = malloc(size);
  if (time == NULL) die("malloc");
  VT(vtime_state_encode(state, time, &size));

  /* The other registers: all KVM lists except the ones vtime carries. */
  struct kvm_reg_list probe = {.n = 0};
  if (ioctl(m->vcpu, KVM_GET_REG_LIST, &probe) == 0 || errno != E2BIG) die("KVM_GET_REG_LIST");
  struct kvm_reg_list *list = malloc(sizeof *list + probe.n * sizeof(uint64_t));
  if (list == NULL) die("malloc");
  list->n = probe.n;
  if (ioctl(m->vcpu, KVM_GET_REG_LIST, list) < 0) die("KVM_GET_REG_LIST");

  FILE *f = fopen(path, "wb");
  if (f == NULL) die(path);
  if (fwrite(kMagic, 1, 8, f) != 8) die("write");
  put_u64(f, size);
  if (fwrite(time, 1, size, f) != size) die("write");
  uint64_t kept = 0;
  for (uint64_t i = 0; i < list->n; ++i) {
    uint64_t id = list->reg[i];
    if (!vtime_kvm_is_time_register(id) && (id & KVM_REG_SIZE_MASK) == KVM_REG_SIZE_U64) ++kept;
  }
  put_u64(f, kept);
  uint64_t skipped_wide = 0;
  for (uint64_t i = 0; i < list->n; ++i) {
    uint64_t id = list->reg[i];
    if (vtime_kvm_is_time_register(id)) continue;
    if ((id & KVM_REG_SIZE_MASK) != KVM_REG_SIZE_U64) {
      ++skipped_wide; /* the FP/SIMD registers: a -mgeneral-regs-only guest has none live */
      continue;
    }
    put_u64(f, id);
    put_u64(f, get_reg(m->vcpu, id));
  }
  put_u64(f, RAM_SIZE);
  if (fwrite(m->ram, 1, RAM_SIZE, f) != RAM_SIZE) die("write");
  if (fclose(f) != 0) die(path);
  printf("vmm: paused at guest CNTVCT %" PRIu64 "; saved to %s: guest time %zu bytes "
         "(vtime), %" PRIu64 " registers, %llu MiB of RAM (%" PRIu64 " FP/SIMD registers "
         "left out)\n",
         paused_count(state), path, size, kept, RAM_SIZE >> 20, skipped_wide);
  free(list);
  free(time);
  vtime_state_destroy(state);
}

static int cmd_run(const char *image, const char *snap, long after_ms) {
  struct vm m;
  vm_create(&m);
  /* vtime: own the offset from the start (guest counters begin at 0), so
   * that every save is exact and the order of vCPU creation never matters. */
  uint64_t now = 0;
  VT(vtime_kvm_host_counter(&now));
  if (m.host_flags & VTIME_HOST_VM_OFFSET_API) VT(vtime_kvm_set_vm_offset(m.clock, m.vm, now));

  FILE *f = fopen(image, "rb");
  if (f == NULL) die(image);
  size_t n = fread(m.ram + IMAGE_OFFSET, 1, RAM_SIZE - IMAGE_OFFSET, f);
  fclose(f);
  if (n == 0) {
    fprintf(stderr, "vtime-example-vmm: %s is empty\n", image);
    return EXIT_FAILED;
  }
  set_reg(m.vcpu, core_reg(32), RAM_BASE + IMAGE_OFFSET);
  set_reg(m.vcpu, core_reg(0), 0); /* no device tree */
  if (snap != NULL) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm; /* no SA_RESTART: KVM_RUN returns EINTR */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval t = {.it_value = {.tv_sec = after_ms / 1000,
                                       .tv_usec = (after_ms % 1000) * 1000}};
    setitimer(ITIMER_REAL, &t, NULL);
  }
  int status = vm_run(&m);
  if (status >= 0) {
    printf("vmm: the guest ended with status %d\n", status);
    return status;
  }
  putchar('\n');
  snapshot(&m, snap);
  return 0;
}

static int cmd_restore(const char *path, const char *policy_name) {
  vtime_policy policy = VTIME_POLICY_FREEZE;
  VT(vtime_policy_parse(policy_name, &policy));
  struct vm m;
  vm_create(&m);
  uint64_t *regs = NULL, nregs = 0;
  vtime_state *state = read_snapshot(path, &regs, &nregs, m.ram);
  for (uint64_t i = 0; i < nregs; ++i) set_reg(m.vcpu, regs[2 * i], regs[2 * i + 1]);
  free(regs);

  /* vtime: offsets (planned under the policy) then the timers, into KVM. */
  vtime_resume_plan plan;
  VT(vtime_kvm_restore(m.clock, m.vm, &m.vcpu, 1, state, (uint32_t)policy, &plan));
  const uint64_t at_pause = paused_count(state);
  const uint64_t now = get_reg(m.vcpu, KVM_REG_ARM_TIMER_CNT); /* KVM's id for CNTVCT */
  printf("vmm: restored (policy %s): CNTVCT paused at %" PRIu64 ", planned to resume at %" PRIu64
         ", reads %" PRIu64 " now (%s)\n",
         vtime_policy_name(policy), at_pause, plan.virtual_count_at_resume, now,
         now >= at_pause ? "not behind the pause" : "BEHIND THE PAUSE");
  vtime_state_destroy(state);
  if (now < at_pause) return EXIT_FAILED;
  int status = vm_run(&m);
  printf("vmm: the guest ended with status %d\n", status);
  return status;
}

#else  /* not arm64: no KVM for arm64 guests here */

static int no_kvm(void) {
  uint64_t now = 0;
  VT(vtime_kvm_host_counter(&now)); /* the library says why it cannot */
  fprintf(stderr, "vtime-example-vmm: the library read a host counter on a host without arm64 KVM\n");
  return EXIT_FAILED;
}
static int cmd_run(const char *image, const char *snap, long after_ms) {
  (void)image, (void)snap, (void)after_ms;
  return no_kvm();
}
static int cmd_restore(const char *path, const char *policy_name) {
  (void)path, (void)policy_name;
  return no_kvm();
}

#endif

static int usage(void) {
  fprintf(stderr,
          "usage: vtime-example-vmm run GUEST.bin [--snapshot FILE --after MS]\n"
          "       vtime-example-vmm restore FILE [--policy freeze|wallclock]\n"
          "       vtime-example-vmm show FILE\n"
          "The time path of a minimal arm64 KVM VMM on libvtime %s (see the source).\n",
          vtime_version_string());
  return EXIT_USAGE;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if ((vtime_version() >> 16) != VTIME_VERSION_MAJOR) {
    fprintf(stderr, "vtime-example-vmm: built for vtime %d.x, loaded %s\n", VTIME_VERSION_MAJOR,
            vtime_version_string());
    return EXIT_FAILED;
  }
  if (argc >= 3 && strcmp(argv[1], "run") == 0) {
    const char *snap = NULL;
    long after = -1;
    for (int i = 3; i + 1 < argc; i += 2) {
      if (strcmp(argv[i], "--snapshot") == 0) {
        snap = argv[i + 1];
      } else if (strcmp(argv[i], "--after") == 0) {
        char *end = NULL;
        after = strtol(argv[i + 1], &end, 10);
        if (*end != '\0' || after <= 0) return usage();
      } else {
        return usage();
      }
    }
    if (argc % 2 == 0 || (snap == NULL) != (after < 0)) return usage();
    return cmd_run(argv[2], snap, after);
  }
  if (argc >= 3 && strcmp(argv[1], "restore") == 0) {
    if (argc == 3) return cmd_restore(argv[2], "freeze");
    if (argc == 5 && strcmp(argv[3], "--policy") == 0) return cmd_restore(argv[2], argv[4]);
    return usage();
  }
  if (argc == 3 && strcmp(argv[1], "show") == 0) return cmd_show(argv[2]);
  return usage();
}
