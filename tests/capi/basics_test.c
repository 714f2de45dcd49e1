/* Versions, status names and the thread-local error message. */
#include <threads.h>

#include "harness.h"

static void test_version(void) {
  CHECK_EQ(vtime_version(), VTIME_VERSION);
  CHECK_EQ(VTIME_VERSION,
           VTIME_MAKE_VERSION(VTIME_VERSION_MAJOR, VTIME_VERSION_MINOR, VTIME_VERSION_PATCH));
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", VTIME_VERSION_MAJOR, VTIME_VERSION_MINOR,
           VTIME_VERSION_PATCH);
  CHECK(strcmp(vtime_version_string(), expected) == 0);
}

static void test_status_names(void) {
  CHECK(strcmp(vtime_status_name(VTIME_OK), "ok") == 0);
  CHECK(strcmp(vtime_status_name(VTIME_ERR_MALFORMED), "malformed") == 0);
  CHECK(strcmp(vtime_status_name(VTIME_ERR_BUFFER_TOO_SMALL), "buffer too small") == 0);
  CHECK(strcmp(vtime_status_name(VTIME_ERR_BAD_HANDLE), "bad handle") == 0);
  /* Every code has its own name, and a value outside the enumeration one
   * that says so. */
  for (uint32_t a = VTIME_OK; a <= VTIME_ERR_INTERNAL; ++a) {
    CHECK(strcmp(vtime_status_name(a), "unknown status") != 0);
    for (uint32_t b = a + 1; b <= VTIME_ERR_INTERNAL; ++b) {
      CHECK(strcmp(vtime_status_name(a), vtime_status_name(b)) != 0);
    }
  }
  CHECK(strcmp(vtime_status_name(13), "unknown status") == 0);
  CHECK(strcmp(vtime_status_name(0xffffffffu), "unknown status") == 0);
}

static int other_thread_message_was_empty;

static int fail_in_thread(void *arg) {
  (void)arg;
  /* A new thread has no failure yet. */
  other_thread_message_was_empty = vtime_last_error()[0] == '\0';
  vtime_policy policy;
  return vtime_policy_parse("sometimes", &policy) == VTIME_ERR_INVALID_ARGUMENT ? 0 : 1;
}

static void test_last_error_is_per_thread_and_kept_by_successes(void) {
  vtime_clock *clock = NULL;
  CHECK_STATUS(vtime_clock_create(0, 0, &clock), VTIME_ERR_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("cntfrq_hz is 0");
  /* A successful call leaves the message of the last failure alone. */
  CHECK_OK(vtime_clock_create(1000000, 0, &clock));
  CHECK_MESSAGE_HAS("cntfrq_hz is 0");

  /* A failure in another thread writes that thread's message only. */
  thrd_t thread;
  CHECK(thrd_create(&thread, fail_in_thread, NULL) == thrd_success);
  int result = -1;
  CHECK(thrd_join(thread, &result) == thrd_success);
  CHECK_EQ(result, 0);
  CHECK(other_thread_message_was_empty);
  CHECK(strncmp(vtime_last_error(), "vtime_clock_create: ", 20) == 0);
  vtime_clock_destroy(clock);
}

int main(void) {
  test_version();
  test_status_names();
  test_last_error_is_per_thread_and_kept_by_successes();
  return harness_finish("capi basics");
}
