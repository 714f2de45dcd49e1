/* One vCPU's timers through the C API: restoring and reading registers,
 * trapped-access emulation from ESR values, the next deadline and the
 * output lines, and every refusal. */
#include "harness.h"

#define FREQ 62500000u /* 62.5 MHz: 16 ns per tick */

/* ESR_EL2 of a trapped MSR/MRS (EC 0x18, IL 1), built by hand from the ISS
 * layout so that vtime_encode_trap is checked against it. */
static uint64_t esr_of(unsigned op0, unsigned op1, unsigned crn, unsigned crm, unsigned op2,
                       unsigned rt, int is_read) {
  return ((uint64_t)0x18 << 26) | ((uint64_t)1 << 25) | ((uint64_t)op0 << 20) |
         ((uint64_t)op2 << 17) | ((uint64_t)op1 << 14) | ((uint64_t)crn << 10) |
         ((uint64_t)rt << 5) | ((uint64_t)crm << 1) | (is_read ? 1u : 0u);
}

static uint64_t esr_for(uint32_t reg, int is_read, uint8_t rt) {
  uint64_t esr = 0;
  CHECK_OK(vtime_encode_trap(reg, is_read, rt, &esr));
  return esr;
}

static vtime_emulation emulate(vtime_vcpu *vcpu, const vtime_clock *clock, uint64_t esr,
                               uint64_t value, uint64_t host, uint32_t el, uint32_t flags) {
  vtime_trap trap = {esr, value, host, el, flags};
  vtime_emulation e;
  memset(&e, 0xa5, sizeof e);
  CHECK_OK(vtime_emulate_trap(vcpu, clock, &trap, &e));
  return e;
}

static vtime_clock *clock_at_offset(uint64_t offset) {
  vtime_clock *clock = NULL;
  CHECK_OK(vtime_clock_create(FREQ, VTIME_HOST_LINUX_6_4, &clock));
  CHECK_OK(vtime_clock_set_vm_offset(clock, offset));
  return clock;
}

static void test_encode_decode(void) {
  CHECK_EQ(esr_for(VTIME_SYSREG_CNTVCT_EL0, 1, 2), esr_of(3, 3, 14, 0, 2, 2, 1));
  CHECK_EQ(esr_for(VTIME_SYSREG_CNTHCTL_EL2, 0, 31), esr_of(3, 4, 14, 1, 0, 31, 0));
  vtime_sysreg_access a;
  CHECK_OK(vtime_decode_trap(esr_of(3, 3, 14, 3, 2, 7, 0), &a));
  CHECK_EQ(a.sysreg, VTIME_SYSREG_CNTV_CVAL_EL0);
  CHECK_EQ(a.op0, 3);
  CHECK_EQ(a.op1, 3);
  CHECK_EQ(a.crn, 14);
  CHECK_EQ(a.crm, 3);
  CHECK_EQ(a.op2, 2);
  CHECK_EQ(a.rt, 7);
  CHECK_EQ(a.is_read, 0);
  /* A well-formed access to a register vtime does not model (MPIDR_EL1). */
  CHECK_OK(vtime_decode_trap(esr_of(3, 0, 0, 0, 5, 1, 1), &a));
  CHECK_EQ(a.sysreg, VTIME_SYSREG_NONE);
  CHECK(strcmp(vtime_sysreg_name(VTIME_SYSREG_CNTVCT_EL0), "CNTVCT_EL0") == 0);
  CHECK(strcmp(vtime_sysreg_name(VTIME_SYSREG_CNTV_CVAL_EL02), "CNTV_CVAL_EL02") == 0);
  CHECK(vtime_sysreg_name(VTIME_SYSREG_NONE) == NULL);
  CHECK(vtime_sysreg_name(28) == NULL);
  CHECK(strcmp(vtime_outcome_name(VTIME_OUTCOME_UNDEFINED), "UNDEFINED") == 0);
  CHECK(strcmp(vtime_outcome_name(VTIME_OUTCOME_READ), "read") == 0);
  CHECK(vtime_outcome_name(6) == NULL);

  /* Refusals. */
  CHECK_STATUS(vtime_decode_trap(esr_of(3, 3, 14, 0, 2, 2, 1), NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_decode_trap(0x16ull << 26 | 1ull << 25, &a), VTIME_ERR_MALFORMED);
  CHECK_STATUS(vtime_decode_trap(esr_of(3, 3, 14, 0, 2, 2, 1) & ~(1ull << 25), &a),
               VTIME_ERR_MALFORMED);
  CHECK_STATUS(vtime_decode_trap(esr_of(3, 3, 14, 0, 2, 2, 1) | 1ull << 40, &a),
               VTIME_ERR_MALFORMED);
  uint64_t esr = 0;
  CHECK_STATUS(vtime_encode_trap(VTIME_SYSREG_CNTVCT_EL0, 1, 2, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_encode_trap(28, 1, 2, &esr), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_encode_trap(VTIME_SYSREG_NONE, 1, 2, &esr), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_encode_trap(VTIME_SYSREG_CNTVCT_EL0, 1, 32, &esr), VTIME_ERR_INVALID_ARGUMENT);
}

static void test_registers(void) {
  vtime_vcpu *vcpu = (vtime_vcpu *)(void *)&vcpu;
  CHECK_STATUS(vtime_vcpu_create(1u << 3, &vcpu), VTIME_ERR_INVALID_ARGUMENT);
  CHECK(vcpu == NULL);
  CHECK_STATUS(vtime_vcpu_create(0, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_OK(vtime_vcpu_create(0, &vcpu));

  uint64_t ctl = 1, cval = 1, value = 1;
  CHECK_OK(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, &ctl, &cval));
  CHECK_EQ(ctl, 0);
  CHECK_EQ(cval, 0);
  CHECK_OK(vtime_vcpu_set_timer(vcpu, VTIME_TIMER_EL1_PHYSICAL, VTIME_CTL_ENABLE | VTIME_CTL_IMASK,
                                12345));
  CHECK_OK(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL1_PHYSICAL, &ctl, &cval));
  CHECK_EQ(ctl, VTIME_CTL_ENABLE | VTIME_CTL_IMASK);
  CHECK_EQ(cval, 12345);
  /* ISTATUS is derived: restoring it is refused. */
  CHECK_STATUS(vtime_vcpu_set_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, VTIME_CTL_ISTATUS, 0),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("ISTATUS");
  /* The EL2 timers and registers exist only with VTIME_VCPU_EL2. */
  CHECK_STATUS(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL2_VIRTUAL, &ctl, &cval),
               VTIME_ERR_UNSUPPORTED);
  CHECK_STATUS(vtime_vcpu_set_timer(vcpu, VTIME_TIMER_EL2_PHYSICAL, 0, 0), VTIME_ERR_UNSUPPORTED);
  CHECK_STATUS(vtime_vcpu_get_reg(vcpu, VTIME_VCPU_REG_CNTHCTL_EL2, &value), VTIME_ERR_UNSUPPORTED);
  CHECK_STATUS(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTVOFF_EL2, 1), VTIME_ERR_UNSUPPORTED);
  CHECK_STATUS(vtime_vcpu_get_reg(vcpu, VTIME_VCPU_REG_CNTPOFF_EL2, &value), VTIME_ERR_UNSUPPORTED);
  /* Unknown timers and registers, NULL outputs. */
  CHECK_STATUS(vtime_vcpu_get_timer(vcpu, 4, &ctl, &cval), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_vcpu_set_timer(vcpu, 0xffffffffu, 0, 0), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, NULL, &cval),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, &ctl, NULL),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_vcpu_get_reg(vcpu, 4, &value), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_vcpu_set_reg(vcpu, 4, 0), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_vcpu_get_reg(vcpu, VTIME_VCPU_REG_CNTKCTL_EL1, NULL),
               VTIME_ERR_INVALID_ARGUMENT);

  /* CNTKCTL_EL1 keeps the bits a guest write could store: EVNTIS only with
   * FEAT_ECV. */
  CHECK_OK(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTKCTL_EL1, 0x3ff));
  CHECK_OK(vtime_vcpu_get_reg(vcpu, VTIME_VCPU_REG_CNTKCTL_EL1, &value));
  CHECK_EQ(value, 0x3ff);
  CHECK_STATUS(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTKCTL_EL1, 1u << 17),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTKCTL_EL1, 1u << 10),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_OK(vtime_vcpu_reset(vcpu));
  CHECK_OK(vtime_vcpu_get_reg(vcpu, VTIME_VCPU_REG_CNTKCTL_EL1, &value));
  CHECK_EQ(value, 0);
  CHECK_OK(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL1_PHYSICAL, &ctl, &cval));
  CHECK_EQ(ctl, 0);
  CHECK_EQ(cval, 0);
  vtime_vcpu_destroy(vcpu);

  /* A nested vCPU with FEAT_ECV and CNTPOFF has all of them. */
  CHECK_OK(vtime_vcpu_create(VTIME_VCPU_EL2 | VTIME_VCPU_ECV | VTIME_VCPU_ECV_CNTPOFF, &vcpu));
  CHECK_OK(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTKCTL_EL1, 1u << 17));
  CHECK_OK(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTHCTL_EL2, 1u << 12));
  CHECK_OK(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTVOFF_EL2, UINT64_MAX));
  CHECK_OK(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTPOFF_EL2, 77));
  CHECK_OK(vtime_vcpu_get_reg(vcpu, VTIME_VCPU_REG_CNTVOFF_EL2, &value));
  CHECK_EQ(value, UINT64_MAX);
  CHECK_OK(vtime_vcpu_get_reg(vcpu, VTIME_VCPU_REG_CNTPOFF_EL2, &value));
  CHECK_EQ(value, 77);
  CHECK_STATUS(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTHCTL_EL2, 1u << 20),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_OK(vtime_vcpu_set_timer(vcpu, VTIME_TIMER_EL2_VIRTUAL, VTIME_CTL_ENABLE, 9));
  vtime_vcpu_destroy(vcpu);
}

static void test_emulation(void) {
  vtime_clock *clock = clock_at_offset(1000);
  vtime_vcpu *vcpu = NULL;
  CHECK_OK(vtime_vcpu_create(0, &vcpu));

  /* MRS x2, CNTVCT_EL0 at EL1: host count minus the VM offset. */
  vtime_emulation e =
      emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTVCT_EL0, 1, 2), 0, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_READ);
  CHECK_EQ(e.value, 4000);
  CHECK_EQ(e.sysreg, VTIME_SYSREG_CNTVCT_EL0);
  CHECK_EQ(e.rt, 2);
  CHECK_EQ(e.is_read, 1);
  for (size_t i = 0; i < sizeof e.reserved; ++i) CHECK_EQ(e.reserved[i], 0);

  /* Program the virtual timer 100 ticks ahead, by CVAL, then enable it. */
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTV_CVAL_EL0, 0, 5), 4100, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_WRITTEN);
  CHECK_EQ(e.is_read, 0);
  CHECK_EQ(e.value, 0);
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTV_CTL_EL0, 0, 5), VTIME_CTL_ENABLE, 5000,
              VTIME_EL1, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_WRITTEN);
  uint64_t ctl = 0, cval = 0;
  CHECK_OK(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, &ctl, &cval));
  CHECK_EQ(ctl, VTIME_CTL_ENABLE);
  CHECK_EQ(cval, 4100);

  /* TVAL is derived: 100 now, -100 (32 bits) once 200 ticks passed. */
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTV_TVAL_EL0, 1, 0), 0, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.value, 100);
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTV_TVAL_EL0, 1, 0), 0, 5200, VTIME_EL1, 0);
  CHECK_EQ(e.value, 0xffffff9c);
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTV_CTL_EL0, 1, 0), 0, 5200, VTIME_EL1, 0);
  CHECK_EQ(e.value, VTIME_CTL_ENABLE | VTIME_CTL_ISTATUS);

  /* The deadline and the line. */
  vtime_deadline d;
  CHECK_OK(vtime_vcpu_next_deadline(vcpu, clock, 5000, &d));
  CHECK_EQ(d.pending, 1);
  CHECK_EQ(d.timer, VTIME_TIMER_EL1_VIRTUAL);
  CHECK_EQ(d.delta_ticks, 100);
  CHECK_EQ(d.delta_ns, 1600);
  CHECK_OK(vtime_vcpu_next_deadline(vcpu, clock, 5100, &d));
  CHECK_EQ(d.delta_ticks, 0);
  uint32_t lines = 0xff;
  CHECK_OK(vtime_vcpu_output_lines(vcpu, clock, 5099, &lines));
  CHECK_EQ(lines, 0);
  CHECK_OK(vtime_vcpu_output_lines(vcpu, clock, 5100, &lines));
  CHECK_EQ(lines, 1u << VTIME_TIMER_EL1_VIRTUAL);
  /* Masked, it cannot fire. */
  CHECK_OK(vtime_vcpu_set_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, VTIME_CTL_ENABLE | VTIME_CTL_IMASK,
                                4100));
  CHECK_OK(vtime_vcpu_next_deadline(vcpu, clock, 5000, &d));
  CHECK_EQ(d.pending, 0);
  CHECK_EQ(d.delta_ticks, 0);
  CHECK_OK(vtime_vcpu_output_lines(vcpu, clock, 5100, &lines));
  CHECK_EQ(lines, 0);

  /* EL0 may read CNTVCT only with CNTKCTL_EL1.EL0VCTEN; else it traps to EL1. */
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTVCT_EL0, 1, 3), 0, 5000, VTIME_EL0, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_TRAP_TO_EL1);
  CHECK_OK(vtime_vcpu_set_reg(vcpu, VTIME_VCPU_REG_CNTKCTL_EL1, 1u << 1));
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTVCT_EL0, 1, 3), 0, 5000, VTIME_EL0, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_READ);
  CHECK_EQ(e.value, 4000);

  /* CNTFRQ reads the clock's frequency; a write at the highest EL is
   * ignored; writing a counter UNDEFs; so does a register vtime lacks. */
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTFRQ_EL0, 1, 0), 0, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.value, FREQ);
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTFRQ_EL0, 0, 0), 1, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_WRITE_IGNORED);
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTVCT_EL0, 0, 0), 1, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_UNDEFINED);
  e = emulate(vcpu, clock, esr_of(3, 0, 0, 0, 5, 1, 1), 0, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_UNDEFINED);
  CHECK_EQ(e.sysreg, VTIME_SYSREG_NONE);
  /* EL2 registers UNDEF on a vCPU without EL2. */
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTHCTL_EL2, 1, 0), 0, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_UNDEFINED);
  vtime_vcpu_destroy(vcpu);
  vtime_clock_destroy(clock);
}

static void test_nested(void) {
  vtime_clock *clock = clock_at_offset(1000);
  vtime_vcpu *vcpu = NULL;
  CHECK_OK(vtime_vcpu_create(VTIME_VCPU_EL2, &vcpu));
  /* The guest hypervisor at EL2 sets its CNTVOFF_EL2; EL1 below it sees the
   * virtual count less that offset. */
  vtime_emulation e =
      emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTVOFF_EL2, 0, 1), 300, 5000, VTIME_EL2, 0);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_WRITTEN);
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTVCT_EL0, 1, 1), 0, 5000, VTIME_EL1, 0);
  CHECK_EQ(e.value, 5000 - 1000 - 300);
  /* With HCR_EL2.NV, EL1's access to an EL2 register goes to virtual EL2. */
  e = emulate(vcpu, clock, esr_for(VTIME_SYSREG_CNTHCTL_EL2, 1, 0), 0, 5000, VTIME_EL1,
              VTIME_CONTEXT_NV);
  CHECK_EQ(e.outcome, VTIME_OUTCOME_TRAP_TO_EL2);
  /* The EL2 physical timer counts in the deadline of a nested vCPU. */
  CHECK_OK(vtime_vcpu_set_timer(vcpu, VTIME_TIMER_EL2_PHYSICAL, VTIME_CTL_ENABLE, 4000 + 10));
  CHECK_OK(vtime_vcpu_set_timer(vcpu, VTIME_TIMER_EL1_PHYSICAL, VTIME_CTL_ENABLE, 4000 + 20));
  vtime_deadline d;
  CHECK_OK(vtime_vcpu_next_deadline(vcpu, clock, 5000, &d));
  CHECK_EQ(d.pending, 1);
  CHECK_EQ(d.timer, VTIME_TIMER_EL2_PHYSICAL);
  CHECK_EQ(d.delta_ticks, 10);
  CHECK_EQ(d.delta_ns, 160);
  uint32_t lines = 0;
  CHECK_OK(vtime_vcpu_output_lines(vcpu, clock, 5015, &lines));
  CHECK_EQ(lines, 1u << VTIME_TIMER_EL2_PHYSICAL);
  vtime_vcpu_destroy(vcpu);
  vtime_clock_destroy(clock);
}

static void test_emulation_refusals(void) {
  vtime_clock *clock = clock_at_offset(0);
  vtime_vcpu *vcpu = NULL;
  CHECK_OK(vtime_vcpu_create(0, &vcpu));
  CHECK_OK(vtime_vcpu_set_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, VTIME_CTL_ENABLE, 77));
  const uint64_t cval_write = esr_for(VTIME_SYSREG_CNTV_CVAL_EL0, 0, 1);
  vtime_trap trap = {cval_write, 5, 100, VTIME_EL1, 0};
  vtime_emulation e;

  /* A syndrome that is not a trapped MSR/MRS changes nothing. */
  trap.esr = 0x16ull << 26 | 1ull << 25;
  CHECK_STATUS(vtime_emulate_trap(vcpu, clock, &trap, &e), VTIME_ERR_MALFORMED);
  trap.esr = cval_write | 1ull << 63;
  CHECK_STATUS(vtime_emulate_trap(vcpu, clock, &trap, &e), VTIME_ERR_MALFORMED);
  CHECK_MESSAGE_HAS("RES0");
  trap.esr = cval_write;
  trap.el = 3;
  CHECK_STATUS(vtime_emulate_trap(vcpu, clock, &trap, &e), VTIME_ERR_INVALID_ARGUMENT);
  trap.el = VTIME_EL1;
  trap.context_flags = 1u << 3;
  CHECK_STATUS(vtime_emulate_trap(vcpu, clock, &trap, &e), VTIME_ERR_INVALID_ARGUMENT);
  trap.context_flags = 0;
  CHECK_STATUS(vtime_emulate_trap(vcpu, clock, NULL, &e), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("trap is NULL");
  CHECK_STATUS(vtime_emulate_trap(vcpu, clock, &trap, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("out is NULL");
  uint64_t ctl = 0, cval = 0;
  CHECK_OK(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, &ctl, &cval));
  CHECK_EQ(cval, 77);

  /* NULL, another kind of handle, and memory that is no handle, as the vCPU
   * and as the clock of every function that takes them. */
  vtime_state *state = NULL;
  CHECK_OK(vtime_state_create(&state));
  uint64_t not_a_handle[16] = {0};
  vtime_vcpu *bad_vcpus[] = {NULL, (vtime_vcpu *)(void *)clock, (vtime_vcpu *)(void *)state,
                             (vtime_vcpu *)(void *)not_a_handle};
  vtime_clock *bad_clocks[] = {NULL, (vtime_clock *)(void *)vcpu, (vtime_clock *)(void *)state,
                               (vtime_clock *)(void *)not_a_handle};
  for (size_t i = 0; i < 4; ++i) {
    vtime_vcpu *v = bad_vcpus[i];
    vtime_clock *c = bad_clocks[i];
    vtime_deadline d;
    uint32_t lines = 0;
    uint64_t value = 0;
    CHECK_STATUS(vtime_emulate_trap(v, clock, &trap, &e), VTIME_ERR_BAD_HANDLE);
    CHECK_MESSAGE_HAS("vcpu is NULL or not a live handle");
    CHECK_STATUS(vtime_emulate_trap(vcpu, c, &trap, &e), VTIME_ERR_BAD_HANDLE);
    CHECK_MESSAGE_HAS("clock is NULL or not a live handle");
    CHECK_STATUS(vtime_vcpu_next_deadline(v, clock, 0, &d), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_vcpu_next_deadline(vcpu, c, 0, &d), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_vcpu_output_lines(v, clock, 0, &lines), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_vcpu_output_lines(vcpu, c, 0, &lines), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_vcpu_reset(v), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_vcpu_get_timer(v, 0, &ctl, &cval), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_vcpu_set_timer(v, 0, 0, 0), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_vcpu_get_reg(v, 0, &value), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_vcpu_set_reg(v, 0, 0), VTIME_ERR_BAD_HANDLE);
    vtime_vcpu_destroy(v);
  }
  vtime_deadline d;
  uint32_t lines = 0;
  CHECK_STATUS(vtime_vcpu_next_deadline(vcpu, clock, 0, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_vcpu_output_lines(vcpu, clock, 0, NULL), VTIME_ERR_INVALID_ARGUMENT);
  (void)d;
  (void)lines;
  /* The real handles are intact. */
  CHECK_OK(vtime_vcpu_get_timer(vcpu, VTIME_TIMER_EL1_VIRTUAL, &ctl, &cval));
  CHECK_EQ(cval, 77);
  CHECK_OK(vtime_emulate_trap(vcpu, clock, &trap, &e));
  vtime_state_destroy(state);
  vtime_vcpu_destroy(vcpu);
  vtime_vcpu_destroy(NULL);
  vtime_clock_destroy(clock);
}

int main(void) {
  test_encode_decode();
  test_registers();
  test_emulation();
  test_nested();
  test_emulation_refusals();
  return harness_finish("capi vcpu");
}
