/* The VM clock through the C API: the offset rules, counter-value writes,
 * the counts for a host count, and every refusal. */
#include "harness.h"

#define FREQ 62500000u /* 62.5 MHz, a common CNTFRQ */

static vtime_clock *make_clock(uint32_t flags) {
  vtime_clock *clock = NULL;
  CHECK_OK(vtime_clock_create(FREQ, flags, &clock));
  CHECK(clock != NULL);
  return clock;
}

static void test_create_refusals(void) {
  vtime_clock *clock = (vtime_clock *)(void *)&clock; /* not NULL: must be reset */
  CHECK_STATUS(vtime_clock_create(FREQ, 0, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("out is NULL");
  CHECK_STATUS(vtime_clock_create(0, VTIME_HOST_LINUX_6_4, &clock), VTIME_ERR_INVALID_ARGUMENT);
  CHECK(clock == NULL);
  clock = (vtime_clock *)(void *)&clock;
  CHECK_STATUS(vtime_clock_create(FREQ, 1u << 3, &clock), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("VTIME_HOST_");
  CHECK(clock == NULL);
  CHECK_STATUS(vtime_clock_create(FREQ, 0x80000000u | VTIME_HOST_VM_OFFSET_API, &clock),
               VTIME_ERR_INVALID_ARGUMENT);
  /* Every defined flag is accepted. */
  CHECK_OK(vtime_clock_create(
      FREQ, VTIME_HOST_VM_OFFSET_API | VTIME_HOST_PHYSICAL_OFFSET | VTIME_HOST_ECV_CNTPOFF,
      &clock));
  uint64_t hz = 0;
  CHECK_OK(vtime_clock_frequency(clock, &hz));
  CHECK_EQ(hz, FREQ);
  vtime_clock_destroy(clock);
}

static void test_legacy_rules(void) {
  vtime_clock *clock = make_clock(VTIME_HOST_LINUX_6_4);
  vtime_clock_info info;
  CHECK_OK(vtime_clock_get_info(clock, &info));
  CHECK_EQ(info.virtual_offset, 0);
  CHECK_EQ(info.virtual_source, VTIME_OFFSET_SOURCE_NONE);
  CHECK_EQ(info.vm_offset_set, 0);

  /* Creating a vCPU restarts the guest's virtual counter at 0. */
  CHECK_OK(vtime_clock_on_vcpu_created(clock, 1000));
  uint64_t cntvct = 1, cntpct = 1;
  CHECK_OK(vtime_clock_counts(clock, 1000, &cntvct, &cntpct));
  CHECK_EQ(cntvct, 0);
  CHECK_EQ(cntpct, 1000);
  CHECK_OK(vtime_clock_counts(clock, 1500, &cntvct, &cntpct));
  CHECK_EQ(cntvct, 500);

  /* A counter-value write moves the VM-wide offset. */
  vtime_counter_write_effect effect = VTIME_COUNTER_WRITE_IGNORED;
  CHECK_OK(vtime_clock_write_counter(clock, VTIME_COUNTER_VIRTUAL, 42, 2000, 0, &effect));
  CHECK_EQ(effect, VTIME_COUNTER_WRITE_APPLIED);
  CHECK_OK(vtime_clock_counts(clock, 2000, &cntvct, &cntpct));
  CHECK_EQ(cntvct, 42);
  CHECK_OK(vtime_clock_write_counter(clock, VTIME_COUNTER_PHYSICAL, 7, 2000, 0, NULL));
  CHECK_OK(vtime_clock_counts(clock, 2010, &cntvct, &cntpct));
  CHECK_EQ(cntpct, 17);
  CHECK_OK(vtime_clock_get_info(clock, &info));
  CHECK_EQ(info.virtual_offset, 2000 - 42);
  CHECK_EQ(info.physical_offset, 2000 - 7);
  CHECK_EQ(info.virtual_source, VTIME_OFFSET_SOURCE_COUNTER_WRITE);
  CHECK_EQ(info.physical_source, VTIME_OFFSET_SOURCE_COUNTER_WRITE);
  /* Without CNTPOFF a non-zero physical offset is emulated by trapping. */
  CHECK_EQ(info.physical_mechanism, VTIME_PHYSICAL_TRAP_AND_EMULATE);
  CHECK_EQ(info.physical_accesses_trap, 1);

  /* A nested vCPU's virtual write lands on the physical offset. */
  CHECK_OK(vtime_clock_write_counter(clock, VTIME_COUNTER_VIRTUAL, 5, 3000, 1, &effect));
  CHECK_OK(vtime_clock_get_info(clock, &info));
  CHECK_EQ(info.physical_offset, 3000 - 5);
  CHECK_EQ(info.virtual_offset, 2000 - 42);

  /* Counter arithmetic is modulo 2^64. */
  CHECK_OK(vtime_clock_write_counter(clock, VTIME_COUNTER_VIRTUAL, 10, 3, 0, NULL));
  CHECK_OK(vtime_clock_counts(clock, 3, &cntvct, &cntpct));
  CHECK_EQ(cntvct, 10);
  CHECK_OK(vtime_clock_get_info(clock, &info));
  CHECK_EQ(info.virtual_offset, UINT64_MAX - 6);
  vtime_clock_destroy(clock);
}

static void test_vm_offset_rules(void) {
  vtime_clock *clock = make_clock(VTIME_HOST_LINUX_6_4 | VTIME_HOST_ECV_CNTPOFF);
  CHECK_OK(vtime_clock_set_vm_offset(clock, 100));
  vtime_clock_info info;
  CHECK_OK(vtime_clock_get_info(clock, &info));
  CHECK_EQ(info.vm_offset_set, 1);
  CHECK_EQ(info.virtual_offset, 100);
  CHECK_EQ(info.physical_offset, 100);
  CHECK_EQ(info.virtual_source, VTIME_OFFSET_SOURCE_VM_OFFSET);
  CHECK_EQ(info.physical_mechanism, VTIME_PHYSICAL_CNTPOFF);
  CHECK_EQ(info.physical_accesses_trap, 0);

  /* From now on counter-value writes succeed and change nothing, and vCPU
   * creation resets nothing. */
  vtime_counter_write_effect effect = VTIME_COUNTER_WRITE_APPLIED;
  CHECK_OK(vtime_clock_write_counter(clock, VTIME_COUNTER_VIRTUAL, 5, 999, 0, &effect));
  CHECK_EQ(effect, VTIME_COUNTER_WRITE_IGNORED);
  CHECK_OK(vtime_clock_write_counter(clock, VTIME_COUNTER_PHYSICAL, 5, 999, 0, &effect));
  CHECK_EQ(effect, VTIME_COUNTER_WRITE_IGNORED);
  CHECK_OK(vtime_clock_on_vcpu_created(clock, 5000));
  uint64_t cntvct = 0, cntpct = 0;
  CHECK_OK(vtime_clock_counts(clock, 5000, &cntvct, &cntpct));
  CHECK_EQ(cntvct, 4900);
  CHECK_EQ(cntpct, 4900);
  /* The offset may be set again. */
  CHECK_OK(vtime_clock_set_vm_offset(clock, 200));
  CHECK_OK(vtime_clock_counts(clock, 5000, &cntvct, &cntpct));
  CHECK_EQ(cntvct, 4800);
  vtime_clock_destroy(clock);
}

static void test_hosts_without_the_apis(void) {
  /* Before Linux 6.4: no VM offset, no physical offset. */
  vtime_clock *clock = make_clock(0);
  CHECK_STATUS(vtime_clock_set_vm_offset(clock, 1), VTIME_ERR_UNSUPPORTED);
  CHECK_MESSAGE_HAS("KVM_CAP_COUNTER_OFFSET");
  CHECK_STATUS(vtime_clock_write_counter(clock, VTIME_COUNTER_PHYSICAL, 1, 2, 0, NULL),
               VTIME_ERR_UNSUPPORTED);
  CHECK_STATUS(vtime_clock_write_counter(clock, VTIME_COUNTER_VIRTUAL, 1, 2, 1, NULL),
               VTIME_ERR_UNSUPPORTED);
  /* The virtual counter still follows the legacy rules. */
  CHECK_OK(vtime_clock_write_counter(clock, VTIME_COUNTER_VIRTUAL, 1, 2, 0, NULL));
  vtime_clock_info info;
  CHECK_OK(vtime_clock_get_info(clock, &info));
  CHECK_EQ(info.virtual_offset, 1);
  CHECK_EQ(info.physical_mechanism, VTIME_PHYSICAL_UNAVAILABLE);
  CHECK_STATUS(vtime_clock_write_counter(clock, 2, 1, 2, 0, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_clock_write_counter(clock, 0xffffffffu, 1, 2, 0, NULL),
               VTIME_ERR_INVALID_ARGUMENT);
  vtime_clock_destroy(clock);
}

static void test_bad_handles_and_pointers(void) {
  /* NULL, a handle of another kind, and memory that is no handle at all. */
  vtime_vcpu *vcpu = NULL;
  CHECK_OK(vtime_vcpu_create(0, &vcpu));
  vtime_state *state = NULL;
  CHECK_OK(vtime_state_create(&state));
  uint64_t not_a_handle[8] = {0};
  vtime_clock *bad[] = {NULL, (vtime_clock *)(void *)vcpu, (vtime_clock *)(void *)state,
                        (vtime_clock *)(void *)not_a_handle};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    vtime_clock *c = bad[i];
    uint64_t a = 0, b = 0;
    vtime_clock_info info;
    CHECK_STATUS(vtime_clock_on_vcpu_created(c, 1), VTIME_ERR_BAD_HANDLE);
    CHECK_MESSAGE_HAS("clock is NULL or not a live handle");
    CHECK_STATUS(vtime_clock_write_counter(c, VTIME_COUNTER_VIRTUAL, 1, 1, 0, NULL),
                 VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_clock_set_vm_offset(c, 1), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_clock_get_info(c, &info), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_clock_frequency(c, &a), VTIME_ERR_BAD_HANDLE);
    CHECK_STATUS(vtime_clock_counts(c, 1, &a, &b), VTIME_ERR_BAD_HANDLE);
    /* Destroying what is not a clock does nothing. */
    vtime_clock_destroy(c);
  }
  /* The handles survived being offered as clocks. */
  CHECK_OK(vtime_vcpu_reset(vcpu));
  size_t vcpus = 1;
  CHECK_OK(vtime_state_vcpu_count(state, &vcpus));
  CHECK_EQ(vcpus, 0);
  for (size_t i = 0; i < sizeof not_a_handle / sizeof not_a_handle[0]; ++i) {
    CHECK_EQ(not_a_handle[i], 0);
  }

  vtime_clock *clock = make_clock(VTIME_HOST_LINUX_6_4);
  uint64_t a = 0;
  CHECK_STATUS(vtime_clock_get_info(clock, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("out is NULL");
  CHECK_STATUS(vtime_clock_frequency(clock, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_clock_counts(clock, 1, NULL, &a), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("cntvct is NULL");
  CHECK_STATUS(vtime_clock_counts(clock, 1, &a, NULL), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("cntpct is NULL");
  vtime_clock_destroy(clock);
  vtime_clock_destroy(NULL);
  vtime_vcpu_destroy(vcpu);
  vtime_state_destroy(state);
}

int main(void) {
  test_create_refusals();
  test_legacy_rules();
  test_vm_offset_rules();
  test_hosts_without_the_apis();
  test_bad_handles_and_pointers();
  return harness_finish("capi clock");
}
