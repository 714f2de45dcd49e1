/* The C API's KVM path (vtime_kvm_*), from C alone. Everywhere: the
 * argument checks, the time-register list, and, on a host without arm64 KVM,
 * that every call says UNSUPPORTED. On Linux arm64 with /dev/kvm (the lab):
 * this program is the VMM that owns the descriptors, and it captures guest
 * time from one VM and restores it into another, with and without the VM
 * offset, and checks every refusal before anything is written. */
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC under -std=c11 */
#include "harness.h"

#include <stdlib.h>

#if defined(__aarch64__)
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>
#endif

/* KVM's ONE_REG ids (arm64 <asm/kvm.h>), spelled out so that the checks
 * below build on any host. TIMER_CNT is CNTVCT, TIMER_CVAL CNTV_CVAL. */
#define REG_TIMER_CTL 0x603000000013DF19ull
#define REG_TIMER_CNT 0x603000000013DF1Aull
#define REG_TIMER_CVAL 0x603000000013DF02ull
#define REG_PTIMER_CTL 0x603000000013DF11ull
#define REG_PTIMER_CNT 0x603000000013DF01ull
#define REG_PTIMER_CVAL 0x603000000013DF12ull
#define REG_CNTKCTL_EL1 0x603000000013C708ull
#define REG_X0 0x6030000000100000ull
#define REG_PC 0x6030000000100040ull
#define REG_MPIDR_EL1 0x603000000013C005ull
#define REG_CNTVOFF_EL2 0x603000000013E703ull
#define REG_CNTHCTL_EL2 0x603000000013E708ull
#define REG_CNTHP_CTL_EL2 0x603000000013E711ull
#define REG_CNTHP_CVAL_EL2 0x603000000013E712ull
#define REG_CNTHV_CTL_EL2 0x603000000013E719ull
#define REG_CNTHV_CVAL_EL2 0x603000000013E71Aull
#define CAP_ARM_EL2 240
#define FEATURE_HAS_EL2 7

static void test_time_registers(void) {
  const uint64_t time_regs[] = {REG_TIMER_CTL,      REG_TIMER_CNT,      REG_TIMER_CVAL,
                                REG_PTIMER_CTL,     REG_PTIMER_CNT,     REG_PTIMER_CVAL,
                                REG_CNTKCTL_EL1,    REG_CNTVOFF_EL2,    REG_CNTHCTL_EL2,
                                REG_CNTHP_CTL_EL2,  REG_CNTHP_CVAL_EL2, REG_CNTHV_CTL_EL2,
                                REG_CNTHV_CVAL_EL2};
  for (size_t i = 0; i < sizeof time_regs / sizeof time_regs[0]; ++i) {
    CHECK_EQ(vtime_kvm_is_time_register(time_regs[i]), 1);
  }
  CHECK_EQ(vtime_kvm_is_time_register(REG_X0), 0);
  CHECK_EQ(vtime_kvm_is_time_register(REG_PC), 0);
  CHECK_EQ(vtime_kvm_is_time_register(REG_MPIDR_EL1), 0);
  CHECK_EQ(vtime_kvm_is_time_register(0x603000000013E000ull), 0); /* VPIDR_EL2: EL2, not time */
  CHECK_EQ(vtime_kvm_is_time_register(0), 0);
}

/* What every call refuses whatever the host. */
static void test_arguments(void) {
  vtime_clock *clock = NULL;
  vtime_state *state = NULL;
  CHECK_OK(vtime_clock_create(1000000000u, VTIME_HOST_LINUX_6_4, &clock));
  CHECK_OK(vtime_state_create(&state));
  const int fds[2] = {-1, -1};
  CHECK_STATUS(vtime_kvm_host_counter(NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_kvm_set_vm_offset(NULL, -1, 0), VTIME_ERR_BAD_HANDLE);
  CHECK_STATUS(vtime_kvm_set_vm_offset((vtime_clock *)(void *)state, -1, 0),
               VTIME_ERR_BAD_HANDLE);
  CHECK_STATUS(vtime_kvm_capture(NULL, fds, 1, state), VTIME_ERR_BAD_HANDLE);
  CHECK_STATUS(vtime_kvm_capture(clock, fds, 1, NULL), VTIME_ERR_BAD_HANDLE);
  CHECK_STATUS(vtime_kvm_capture(clock, fds, 1, (vtime_state *)(void *)clock),
               VTIME_ERR_BAD_HANDLE);
  CHECK_STATUS(vtime_kvm_capture(clock, NULL, 1, state), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_kvm_capture(clock, fds, 0, state), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_kvm_capture(clock, fds, VTIME_STATE_MAX_VCPUS + 1, state),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("is not 1..512");
  CHECK_STATUS(vtime_kvm_restore(NULL, -1, fds, 1, state, VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_BAD_HANDLE);
  CHECK_STATUS(vtime_kvm_restore(clock, -1, fds, 1, NULL, VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_BAD_HANDLE);
  CHECK_STATUS(vtime_kvm_restore(clock, -1, NULL, 1, state, VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_kvm_restore(clock, -1, fds, 1, state, 2, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("policy");
  /* A state with no vCPU validates, but there is nothing to restore it on. */
  CHECK_STATUS(vtime_kvm_restore(clock, -1, fds, 0, state, VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_kvm_restore(clock, -1, fds, VTIME_STATE_MAX_VCPUS + 1, state,
                                 VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_INVALID_ARGUMENT);
  vtime_state_destroy(state);
  vtime_clock_destroy(clock);
}

#if !defined(__aarch64__)

/* No arm64 KVM here: each call says so, naming itself. */
static void test_unsupported(void) {
  vtime_clock *clock = NULL;
  vtime_state *state = NULL;
  CHECK_OK(vtime_clock_create(1000000000u, VTIME_HOST_LINUX_6_4, &clock));
  CHECK_OK(vtime_state_create(&state));
  const int fds[1] = {0};
  uint64_t count = 0;
  uint32_t flags = 0;
  CHECK_STATUS(vtime_kvm_probe(0, &flags, NULL), VTIME_ERR_UNSUPPORTED);
  CHECK_MESSAGE_HAS("arm64");
  CHECK_STATUS(vtime_kvm_host_counter(&count), VTIME_ERR_UNSUPPORTED);
  CHECK_STATUS(vtime_kvm_set_vm_offset(clock, 0, 0), VTIME_ERR_UNSUPPORTED);
  CHECK_STATUS(vtime_kvm_capture(clock, fds, 1, state), VTIME_ERR_UNSUPPORTED);
  CHECK_STATUS(vtime_kvm_restore(clock, 0, fds, 1, state, VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_UNSUPPORTED);
  vtime_state_destroy(state);
  vtime_clock_destroy(clock);
}

int main(void) {
  test_time_registers();
  test_arguments();
  test_unsupported();
  return harness_finish("capi.kvm (no arm64 KVM on this host)");
}

#else

/* A VM with n initialised vCPUs (not run), as a VMM makes it. */
struct vm {
  int vm;
  int vcpu[2];
  size_t n;
};

static int kvm_fd = -1;

static int make_vm_el2(struct vm *m, size_t n, int el2) {
  m->vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
  if (m->vm < 0) return -1;
  m->n = n;
  struct kvm_vcpu_init init;
  if (ioctl(m->vm, KVM_ARM_PREFERRED_TARGET, &init) < 0) return -1;
  init.features[0] |= 1u << KVM_ARM_VCPU_PSCI_0_2;
  if (el2) init.features[0] |= 1u << FEATURE_HAS_EL2;
  for (size_t i = 0; i < n; ++i) {
    m->vcpu[i] = ioctl(m->vm, KVM_CREATE_VCPU, (unsigned long)i);
    if (m->vcpu[i] < 0 || ioctl(m->vcpu[i], KVM_ARM_VCPU_INIT, &init) < 0) return -1;
  }
  return 0;
}

static int make_vm(struct vm *m, size_t n) { return make_vm_el2(m, n, 0); }

static void free_vm(struct vm *m) {
  for (size_t i = 0; i < m->n; ++i) close(m->vcpu[i]);
  close(m->vm);
}

static uint64_t get(int fd, uint64_t id) {
  uint64_t v = 0;
  struct kvm_one_reg r = {.id = id, .addr = (uint64_t)(uintptr_t)&v};
  CHECK(ioctl(fd, KVM_GET_ONE_REG, &r) == 0);
  return v;
}

static void set(int fd, uint64_t id, uint64_t v) {
  struct kvm_one_reg r = {.id = id, .addr = (uint64_t)(uintptr_t)&v};
  CHECK(ioctl(fd, KVM_SET_ONE_REG, &r) == 0);
}

static uint64_t host_now(void) {
  uint64_t c = 0;
  CHECK_OK(vtime_kvm_host_counter(&c));
  return c;
}

/* The source: a VM whose offset vtime set, with timers programmed. */
static void program_timers(const struct vm *m) {
  set(m->vcpu[0], REG_CNTKCTL_EL1, 0x3);  /* EL0VCTEN | EL0PCTEN */
  set(m->vcpu[0], REG_TIMER_CTL, VTIME_CTL_ENABLE | VTIME_CTL_IMASK);
  set(m->vcpu[0], REG_TIMER_CVAL, 123456789);
  set(m->vcpu[1], REG_PTIMER_CTL, VTIME_CTL_ENABLE);
  set(m->vcpu[1], REG_PTIMER_CVAL, 987654321);
}

static void check_timers(const struct vm *m) {
  CHECK_EQ(get(m->vcpu[0], REG_CNTKCTL_EL1) & 0x3, 0x3);
  CHECK_EQ(get(m->vcpu[0], REG_TIMER_CTL) & 3u, VTIME_CTL_ENABLE | VTIME_CTL_IMASK);
  CHECK_EQ(get(m->vcpu[0], REG_TIMER_CVAL), 123456789);
  CHECK_EQ(get(m->vcpu[1], REG_PTIMER_CTL) & 3u, VTIME_CTL_ENABLE);
  CHECK_EQ(get(m->vcpu[1], REG_PTIMER_CVAL), 987654321);
}

static void test_with_vm_offset(void) {
  struct vm src, dst, one;
  CHECK(make_vm(&src, 2) == 0);
  uint32_t flags = 0;
  uint64_t hz = 0;
  CHECK_OK(vtime_kvm_probe(src.vm, &flags, &hz));
  printf("probe: host_flags=0x%x cntfrq=%" PRIu64 "\n", flags, hz);
  CHECK(hz > 0);
  CHECK(flags & VTIME_HOST_VM_OFFSET_API); /* the lab's 6.12 */
  vtime_clock *clock = NULL;
  CHECK_OK(vtime_clock_create(hz, flags, &clock));
  /* The guest's counters read 10 s now. */
  const uint64_t offset = host_now() - 10 * hz;
  CHECK_OK(vtime_kvm_set_vm_offset(clock, src.vm, offset));
  const uint64_t cntvct = get(src.vcpu[0], REG_TIMER_CNT);
  CHECK(cntvct >= 10 * hz && cntvct < 11 * hz);
  program_timers(&src);

  vtime_state *state = NULL;
  CHECK_OK(vtime_state_create(&state));
  CHECK_OK(vtime_kvm_capture(clock, src.vcpu, 2, state));
  CHECK_OK(vtime_state_validate(state));
  vtime_state_vm vm;
  CHECK_OK(vtime_state_get_vm(state, &vm));
  CHECK_EQ(vm.offset_api, VTIME_OFFSET_API_VM_OFFSET);
  CHECK_EQ(vm.virtual_offset, offset); /* exact: the offset set, not one read back */
  CHECK_EQ(vm.physical_offset, offset);
  CHECK_EQ(vm.counter_frequency_hz, hz);
  size_t count = 0;
  CHECK_OK(vtime_state_vcpu_count(state, &count));
  CHECK_EQ(count, 2);
  vtime_state_vcpu v0, v1;
  CHECK_OK(vtime_state_get_vcpu(state, 0, &v0));
  CHECK_OK(vtime_state_get_vcpu(state, 1, &v1));
  CHECK_EQ(v0.timer_ctl[VTIME_TIMER_EL1_VIRTUAL], VTIME_CTL_ENABLE | VTIME_CTL_IMASK);
  CHECK_EQ(v0.timer_cval[VTIME_TIMER_EL1_VIRTUAL], 123456789);
  CHECK_EQ(v0.cntkctl_el1 & 0x3, 0x3);
  CHECK_EQ(v1.timer_ctl[VTIME_TIMER_EL1_PHYSICAL], VTIME_CTL_ENABLE);
  CHECK_EQ(v1.timer_cval[VTIME_TIMER_EL1_PHYSICAL], 987654321);
  CHECK_EQ(v0.flags, 0); /* no PV time was set up */
  const uint64_t paused = vm.pause.host_counter - vm.virtual_offset;

  /* Refusals before anything is written: the wrong vCPU count, and a PV
   * record the destination does not have. */
  CHECK(make_vm(&one, 1) == 0);
  vtime_clock *clock1 = NULL;
  CHECK_OK(vtime_clock_create(hz, flags, &clock1));
  CHECK_STATUS(vtime_kvm_restore(clock1, one.vm, one.vcpu, 1, state, VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_OUT_OF_RANGE);
  CHECK_MESSAGE_HAS("2 vCPUs");
  vtime_clock_info info;
  CHECK_OK(vtime_clock_get_info(clock1, &info));
  CHECK_EQ(info.vm_offset_set, 0); /* nothing applied */
  free_vm(&one);
  vtime_clock_destroy(clock1);

  CHECK(make_vm(&dst, 2) == 0);
  vtime_clock *clock2 = NULL;
  CHECK_OK(vtime_clock_create(hz, flags, &clock2));
  vtime_state_vcpu pv = v1;
  pv.flags = VTIME_STATE_VCPU_PVTIME;
  pv.pvtime_ipa = 0x090a0040;
  CHECK_OK(vtime_state_set_vcpu(state, 1, &pv));
  CHECK_STATUS(vtime_kvm_restore(clock2, dst.vm, dst.vcpu, 2, state, VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_BAD_STATE);
  CHECK_MESSAGE_HAS("PV stolen time");
  CHECK_OK(vtime_clock_get_info(clock2, &info));
  CHECK_EQ(info.vm_offset_set, 0);
  CHECK_OK(vtime_state_set_vcpu(state, 1, &v1));

  /* The restore: freeze resumes at the paused count exactly. */
  vtime_resume_plan plan;
  CHECK_OK(vtime_kvm_restore(clock2, dst.vm, dst.vcpu, 2, state, VTIME_POLICY_FREEZE, &plan));
  CHECK_EQ(plan.virtual_count_at_resume, paused);
  const uint64_t after = get(dst.vcpu[0], REG_TIMER_CNT);
  printf("freeze: paused at %" PRIu64 ", reads %" PRIu64 " (+%" PRIu64 " ticks) after the restore\n",
         paused, after, after - paused);
  CHECK(after >= paused && after - paused < hz); /* within a second of emulated ioctls */
  CHECK(get(dst.vcpu[1], REG_TIMER_CNT) >= paused);
  CHECK_OK(vtime_clock_get_info(clock2, &info));
  CHECK_EQ(info.vm_offset_set, 1);
  CHECK_EQ(info.virtual_offset, plan.vm_offset);
  check_timers(&dst);
  /* Counter-value writes after the VM offset: ignored, as KVM does. */
  set(dst.vcpu[0], REG_TIMER_CNT, 5);
  CHECK(get(dst.vcpu[0], REG_TIMER_CNT) >= paused);

  /* Idempotent: the state captured from the restored VM, restored again
   * under freeze, plans the same resume count as its own pause. */
  vtime_state *again = NULL;
  CHECK_OK(vtime_state_create(&again));
  CHECK_OK(vtime_kvm_capture(clock2, dst.vcpu, 2, again));
  vtime_state_vm vm2;
  CHECK_OK(vtime_state_get_vm(again, &vm2));
  CHECK_EQ(vm2.virtual_offset, plan.vm_offset);

  /* A descriptor that is not a vCPU: the ioctl's failure, named. */
  const int bad[2] = {dst.vm, dst.vcpu[1]};
  CHECK_STATUS(vtime_kvm_capture(clock2, bad, 2, again), VTIME_ERR_SYSTEM);
  CHECK_MESSAGE_HAS("KVM_GET_ONE_REG");
  CHECK_STATUS(vtime_kvm_probe(-1, &flags, NULL), VTIME_ERR_SYSTEM);
  CHECK_MESSAGE_HAS("KVM_CHECK_EXTENSION");

  vtime_state_destroy(again);
  vtime_state_destroy(state);
  vtime_clock_destroy(clock2);
  vtime_clock_destroy(clock);
  free_vm(&dst);
  free_vm(&src);
}

/* A VMM that never sets the VM offset (KVM's own rules, or a kernel before
 * 6.4): capture measures the offsets, restore writes counter values. */
static void test_without_vm_offset(void) {
  struct vm src, dst;
  CHECK(make_vm(&src, 2) == 0);
  uint64_t hz = 0;
  CHECK_OK(vtime_kvm_probe(src.vm, NULL, &hz));
  vtime_clock *clock = NULL;
  CHECK_OK(vtime_clock_create(hz, 0, &clock)); /* a host without the VM offset */
  CHECK_STATUS(vtime_kvm_set_vm_offset(clock, src.vm, 0), VTIME_ERR_UNSUPPORTED);
  program_timers(&src);
  vtime_state *state = NULL;
  CHECK_OK(vtime_state_create(&state));
  const uint64_t before = get(src.vcpu[0], REG_TIMER_CNT);
  CHECK_OK(vtime_kvm_capture(clock, src.vcpu, 2, state));
  const uint64_t after = get(src.vcpu[0], REG_TIMER_CNT);
  vtime_state_vm vm;
  CHECK_OK(vtime_state_get_vm(state, &vm));
  CHECK_EQ(vm.offset_api, VTIME_OFFSET_API_NONE);
  const uint64_t paused = vm.pause.host_counter - vm.virtual_offset;
  printf("measured: CNTVCT %" PRIu64 " .. %" PRIu64 ", the state says %" PRIu64 " at the pause\n",
         before, after, paused);
  CHECK(paused >= before && paused <= after + hz / 1000); /* the measure is within 1 ms */
  CHECK_EQ(vm.physical_offset, 0); /* no VTIME_HOST_PHYSICAL_OFFSET */

  CHECK(make_vm(&dst, 2) == 0);
  vtime_clock *clock2 = NULL;
  CHECK_OK(vtime_clock_create(hz, 0, &clock2));
  vtime_resume_plan plan;
  CHECK_OK(vtime_kvm_restore(clock2, dst.vm, dst.vcpu, 2, state, VTIME_POLICY_WALLCLOCK, &plan));
  const uint64_t now = get(dst.vcpu[0], REG_TIMER_CNT);
  printf("wallclock by counter writes: paused at %" PRIu64 ", planned %" PRIu64 ", reads %" PRIu64
         "\n", paused, plan.virtual_count_at_resume, now);
  CHECK(plan.virtual_count_at_resume >= paused);
  CHECK(now >= plan.virtual_count_at_resume && now - plan.virtual_count_at_resume < hz);
  vtime_clock_info info;
  CHECK_OK(vtime_clock_get_info(clock2, &info));
  CHECK_EQ(info.virtual_source, VTIME_OFFSET_SOURCE_COUNTER_WRITE);
  check_timers(&dst);

  vtime_state_destroy(state);
  vtime_clock_destroy(clock2);
  vtime_clock_destroy(clock);
  free_vm(&dst);
  free_vm(&src);
}

/* A guest hypervisor's vCPU (KVM_ARM_VCPU_HAS_EL2): its EL2 time is
 * captured with it, marked nested, and restored only onto a vCPU with EL2.
 * Where KVM has no nested virtualization this says so and counts it, never
 * as a pass. */
static void test_nested(void) {
  if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, CAP_ARM_EL2) <= 0) {
    printf("NOT-ON-KERNEL capi.kvm nested: no nested virtualization on this kernel\n");
    return;
  }
  struct vm src, dst, flat;
  CHECK(make_vm_el2(&src, 1, 1) == 0);
  uint32_t flags = 0;
  uint64_t hz = 0;
  CHECK_OK(vtime_kvm_probe(src.vm, &flags, &hz));
  vtime_clock *clock = NULL;
  CHECK_OK(vtime_clock_create(hz, flags, &clock));
  CHECK_OK(vtime_kvm_set_vm_offset(clock, src.vm, host_now() - 10 * hz));
  set(src.vcpu[0], REG_CNTVOFF_EL2, 0x123456789ull);
  set(src.vcpu[0], REG_CNTHP_CTL_EL2, VTIME_CTL_ENABLE);
  set(src.vcpu[0], REG_CNTHP_CVAL_EL2, 555555555);
  set(src.vcpu[0], REG_CNTHV_CTL_EL2, VTIME_CTL_ENABLE | VTIME_CTL_IMASK);
  set(src.vcpu[0], REG_CNTHV_CVAL_EL2, 666666666);
  const uint64_t cnthctl = get(src.vcpu[0], REG_CNTHCTL_EL2);
  vtime_state *state = NULL;
  CHECK_OK(vtime_state_create(&state));
  CHECK_OK(vtime_kvm_capture(clock, src.vcpu, 1, state));
  vtime_state_vcpu v;
  CHECK_OK(vtime_state_get_vcpu(state, 0, &v));
  CHECK(v.flags & VTIME_STATE_VCPU_NESTED);
  CHECK_EQ(v.cntvoff_el2, 0x123456789ull);
  CHECK_EQ(v.cnthctl_el2, cnthctl);
  CHECK_EQ(v.timer_ctl[VTIME_TIMER_EL2_PHYSICAL], VTIME_CTL_ENABLE);
  CHECK_EQ(v.timer_cval[VTIME_TIMER_EL2_PHYSICAL], 555555555);
  CHECK_EQ(v.timer_ctl[VTIME_TIMER_EL2_VIRTUAL], VTIME_CTL_ENABLE | VTIME_CTL_IMASK);
  CHECK_EQ(v.timer_cval[VTIME_TIMER_EL2_VIRTUAL], 666666666);
  CHECK_EQ(vtime_kvm_is_time_register(REG_CNTVOFF_EL2), 1);
  CHECK_EQ(vtime_kvm_is_time_register(REG_CNTHV_CVAL_EL2), 1);

  /* Onto a vCPU without EL2: refused, nothing written. */
  CHECK(make_vm(&flat, 1) == 0);
  vtime_clock *clock1 = NULL;
  CHECK_OK(vtime_clock_create(hz, flags, &clock1));
  CHECK_STATUS(vtime_kvm_restore(clock1, flat.vm, flat.vcpu, 1, state, VTIME_POLICY_FREEZE, NULL),
               VTIME_ERR_BAD_STATE);
  CHECK_MESSAGE_HAS("vEL2");
  vtime_clock_info info;
  CHECK_OK(vtime_clock_get_info(clock1, &info));
  CHECK_EQ(info.vm_offset_set, 0);
  free_vm(&flat);
  vtime_clock_destroy(clock1);

  /* Onto a vCPU with EL2: its EL2 time comes back. */
  CHECK(make_vm_el2(&dst, 1, 1) == 0);
  vtime_clock *clock2 = NULL;
  CHECK_OK(vtime_clock_create(hz, flags, &clock2));
  CHECK_OK(vtime_kvm_restore(clock2, dst.vm, dst.vcpu, 1, state, VTIME_POLICY_FREEZE, NULL));
  CHECK_EQ(get(dst.vcpu[0], REG_CNTVOFF_EL2), 0x123456789ull);
  CHECK_EQ(get(dst.vcpu[0], REG_CNTHCTL_EL2), cnthctl);
  CHECK_EQ(get(dst.vcpu[0], REG_CNTHP_CTL_EL2) & 3u, VTIME_CTL_ENABLE);
  CHECK_EQ(get(dst.vcpu[0], REG_CNTHP_CVAL_EL2), 555555555);
  CHECK_EQ(get(dst.vcpu[0], REG_CNTHV_CTL_EL2) & 3u, VTIME_CTL_ENABLE | VTIME_CTL_IMASK);
  CHECK_EQ(get(dst.vcpu[0], REG_CNTHV_CVAL_EL2), 666666666);
  printf("capi.kvm nested: EL2 time captured, refused onto a vCPU without EL2, restored onto one "
         "with it\n");
  vtime_clock_destroy(clock2);
  free_vm(&dst);
  vtime_state_destroy(state);
  vtime_clock_destroy(clock);
  free_vm(&src);
}

int main(void) {
  test_time_registers();
  test_arguments();
  kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm_fd < 0) {
    /* Never a silent skip: without KVM this test fails and says why. */
    fprintf(stderr, "capi.kvm: /dev/kvm: %s (this test needs arm64 KVM)\n", strerror(errno));
    return 1;
  }
  test_with_vm_offset();
  test_without_vm_offset();
  test_nested();
  return harness_finish("capi.kvm (arm64 KVM)");
}

#endif
