/* The migration policies through the C API: parsing, names, and the resume
 * plans freeze and wallclock make, with every refusal. */
#include "harness.h"

#define FREQ 1000000000u /* 1 GHz: a tick is a nanosecond, so the sums read easily */

static vtime_state *paused_state(uint64_t virtual_offset, uint64_t physical_offset) {
  vtime_state *state = NULL;
  CHECK_OK(vtime_state_create(&state));
  vtime_state_vm vm;
  CHECK_OK(vtime_state_get_vm(state, &vm));
  vm.counter_frequency_hz = FREQ;
  vm.offset_api = VTIME_OFFSET_API_VM_OFFSET;
  vm.virtual_offset = virtual_offset;
  vm.physical_offset = physical_offset;
  vm.pause.host_counter = 50000;
  vm.pause.wall_clock_ns = 1000000;
  CHECK_OK(vtime_state_set_vm(state, &vm));
  return state;
}

static void test_names(void) {
  vtime_policy policy = VTIME_POLICY_FREEZE;
  CHECK_OK(vtime_policy_parse("wallclock", &policy));
  CHECK_EQ(policy, VTIME_POLICY_WALLCLOCK);
  CHECK_OK(vtime_policy_parse("freeze", &policy));
  CHECK_EQ(policy, VTIME_POLICY_FREEZE);
  CHECK(strcmp(vtime_policy_name(VTIME_POLICY_WALLCLOCK), "wallclock") == 0);
  CHECK(strcmp(vtime_policy_name(VTIME_POLICY_FREEZE), "freeze") == 0);
  CHECK(vtime_policy_name(2) == NULL);
  CHECK_STATUS(vtime_policy_parse("Freeze", &policy), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("freeze or wallclock");
  CHECK_STATUS(vtime_policy_parse("", &policy), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_policy_parse(NULL, &policy), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_policy_parse("freeze", NULL), VTIME_ERR_INVALID_ARGUMENT);
}

static void test_freeze(void) {
  /* Paused at guest count 50000 - 10000 = 40000; the destination's host
   * counter is elsewhere entirely, and a minute has passed. */
  vtime_state *state = paused_state(10000, 10000);
  const vtime_capture_pair destination = {900000000, 61000000};
  vtime_resume_plan plan;
  CHECK_OK(vtime_plan_resume(state, VTIME_POLICY_FREEZE, &destination, FREQ, &plan));
  CHECK_EQ(plan.advanced_ticks, 0);
  CHECK_EQ(plan.virtual_count_at_resume, 40000);
  CHECK_EQ(plan.physical_count_at_resume, 40000);
  CHECK_EQ(plan.vm_offset, 900000000 - 40000);
  CHECK_EQ(plan.virtual_offset, plan.vm_offset);
  CHECK_EQ(plan.wall_clock_went_backwards, 0);
  CHECK_EQ(plan.reserved, 0);
  /* Deterministic: the same inputs, the same plan. */
  vtime_resume_plan again;
  CHECK_OK(vtime_plan_resume(state, VTIME_POLICY_FREEZE, &destination, FREQ, &again));
  CHECK(memcmp(&plan, &again, sizeof plan) == 0);
  vtime_state_destroy(state);
}

static void test_wallclock(void) {
  /* The physical counter is 500 ahead of the virtual one (legacy writes):
   * the one VM offset follows it, so neither goes backwards. */
  vtime_state *state = paused_state(10000, 9500);
  const vtime_capture_pair destination = {7000000, 1000000 + 2500};
  vtime_resume_plan plan;
  CHECK_OK(vtime_plan_resume(state, VTIME_POLICY_WALLCLOCK, &destination, FREQ, &plan));
  CHECK_EQ(plan.advanced_ticks, 2500);
  CHECK_EQ(plan.virtual_count_at_resume, 40000 + 2500);
  CHECK_EQ(plan.physical_count_at_resume, 40500 + 2500);
  CHECK_EQ(plan.virtual_offset, 7000000 - 42500);
  CHECK_EQ(plan.physical_offset, 7000000 - 43000);
  CHECK_EQ(plan.vm_offset, plan.physical_offset);

  /* A destination clock behind the pause: no time added, and it says so. */
  const vtime_capture_pair behind = {7000000, 1000000 - 1};
  CHECK_OK(vtime_plan_resume(state, VTIME_POLICY_WALLCLOCK, &behind, FREQ, &plan));
  CHECK_EQ(plan.wall_clock_went_backwards, 1);
  CHECK_EQ(plan.advanced_ticks, 0);
  CHECK_EQ(plan.virtual_count_at_resume, 40000);
  vtime_state_destroy(state);
}

static void test_refusals(void) {
  vtime_state *state = paused_state(0, 0);
  const vtime_capture_pair destination = {1, 2};
  vtime_resume_plan plan;
  /* A KVM guest's CNTFRQ cannot change. */
  CHECK_STATUS(vtime_plan_resume(state, VTIME_POLICY_FREEZE, &destination, FREQ / 2, &plan),
               VTIME_ERR_UNSUPPORTED);
  CHECK_MESSAGE_HAS("500000000 Hz");
  CHECK_STATUS(vtime_plan_resume(state, 2, &destination, FREQ, &plan), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(vtime_plan_resume(state, VTIME_POLICY_FREEZE, NULL, FREQ, &plan),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("destination is NULL");
  CHECK_STATUS(vtime_plan_resume(state, VTIME_POLICY_FREEZE, &destination, FREQ, NULL),
               VTIME_ERR_INVALID_ARGUMENT);
  /* A state without a counter frequency. */
  vtime_state *empty = NULL;
  CHECK_OK(vtime_state_create(&empty));
  CHECK_STATUS(vtime_plan_resume(empty, VTIME_POLICY_FREEZE, &destination, FREQ, &plan),
               VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("no counter frequency");
  /* Handles. */
  vtime_clock *clock = NULL;
  CHECK_OK(vtime_clock_create(FREQ, 0, &clock));
  uint64_t not_a_handle[16] = {0};
  CHECK_STATUS(vtime_plan_resume(NULL, VTIME_POLICY_FREEZE, &destination, FREQ, &plan),
               VTIME_ERR_BAD_HANDLE);
  CHECK_MESSAGE_HAS("saved is NULL");
  CHECK_STATUS(vtime_plan_resume((vtime_state *)(void *)clock, VTIME_POLICY_FREEZE, &destination,
                                 FREQ, &plan),
               VTIME_ERR_BAD_HANDLE);
  CHECK_STATUS(vtime_plan_resume((vtime_state *)(void *)not_a_handle, VTIME_POLICY_FREEZE,
                                 &destination, FREQ, &plan),
               VTIME_ERR_BAD_HANDLE);
  vtime_clock_destroy(clock);
  vtime_state_destroy(empty);
  vtime_state_destroy(state);
}

int main(void) {
  test_names();
  test_freeze();
  test_wallclock();
  test_refusals();
  return harness_finish("capi policy");
}
